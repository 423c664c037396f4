"""One writer per MODEL_DIR: an owner file with host, pid and a heartbeat.

A second trainer started on the same MODEL_DIR (a relaunch while the previous job still lives, as
preemptible clusters do) is refused with a message naming the holder, instead of interleaving
checkpoints of two histories. A lock left by a dead process never blocks for long:
  - same host: the holder's pid is checked; a dead pid is taken over at once;
  - another host: the holder touches the file every `stale_seconds / 5`; a file untouched for
    `stale_seconds` is stale and taken over (a relaunch waits up to that long for it).
Local and network file systems only (O_EXCL create); gs:// and other remote MODEL_DIRs are not
locked (a warning says so). Only process 0 of a multi-host run takes the lock.
"""

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Dict, Optional

LOCK_NAME = "trainer.lock"


class ModelDirLocked(RuntimeError):
  """Another live trainer owns this MODEL_DIR."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class RunLock:
  """Owner file `<model_dir>/trainer.lock`; use as a context manager or acquire()/release()."""

  def __init__(self, model_dir: str, stale_seconds: float = 300.0):
    self.path = os.path.join(model_dir, LOCK_NAME)
    self.stale_seconds = float(stale_seconds)
    self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self.held = False
    self.lost = False  # Set by the heartbeat when another process took the file over.

  def _read(self) -> Optional[Dict[str, Any]]:
    try:
      with open(self.path) as f:
        holder = json.load(f)
      holder["age"] = time.time() - os.stat(self.path).st_mtime
      return holder
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {"host": "?", "pid": -1, "age": 0.0}  # Being written right now: treat as live.

  def _stale_reason(self, holder: Dict[str, Any]) -> Optional[str]:
    if holder.get("host") == self.owner["host"] and holder.get("pid", -1) > 0:
      if holder["pid"] == self.owner["pid"]:
        return None  # This very process (an earlier train() call that did not release).
      if not _pid_alive(int(holder["pid"])):
        return f"its process {holder['pid']} on this host is dead"
    if holder["age"] > self.stale_seconds:
      return f"its heartbeat stopped {holder['age']:.0f} s ago (> {self.stale_seconds:.0f} s)"
    return None

  def _describe(self, holder: Dict[str, Any]) -> str:
    return (f"host {holder.get('host')} pid {holder.get('pid')}, heartbeat "
            f"{holder.get('age', 0):.0f} s ago")

  def acquire(self) -> "RunLock":
    if "://" in self.path:
      logging.warning("MODEL_DIR %s is remote: not locked against a second trainer.",
                      os.path.dirname(self.path))
      return self
    deadline = time.monotonic() + self.stale_seconds
    while True:
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._read()
        if holder is None:
          continue
        reason = self._stale_reason(holder)
        same_host = holder.get("host") == self.owner["host"]
        if reason:
          logging.warning("Taking over the stale lock %s (%s): %s.", self.path,
                          self._describe(holder), reason)
          try:
            os.remove(self.path)
          except FileNotFoundError:
            pass
          continue
        if same_host or time.monotonic() > deadline:
          raise ModelDirLocked(
              f"{os.path.dirname(self.path)} is in use by another trainer ({self._describe(holder)}"
              f"); stop that process or choose another MODEL_DIR. If it is gone, the lock goes "
              f"stale {self.stale_seconds:.0f} s after its last heartbeat, or delete {self.path}.")
        time.sleep(min(self.stale_seconds / 10, 5.0))  # Another host: wait for it to go stale.
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(self.owner, f)
      break
    self.held = True
    self._thread = threading.Thread(target=self._heartbeat, daemon=True, name="run-lock")
    self._thread.start()
    return self

  def _heartbeat(self) -> None:
    while not self._stop.wait(max(self.stale_seconds / 5, 0.05)):
      holder = self._read()
      if holder is None or holder.get("pid") != self.owner["pid"] or (
          holder.get("host") != self.owner["host"]):
        self.lost = True
        logging.error("Lost the MODEL_DIR lock %s to %s.", self.path,
                      self._describe(holder) if holder else "nobody (file deleted)")
        return
      try:
        os.utime(self.path, None)
      except OSError:
        pass

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    if self.held and not self.lost:
      holder = self._read()
      if holder and holder.get("pid") == self.owner["pid"]:
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
    self.held = False

  def __enter__(self) -> "RunLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
