"""Tests for slam_jax/run_lock.py: one trainer per MODEL_DIR, stale locks are taken over."""

import json
import os
import socket
import subprocess
import sys

import pytest

from slam_jax import run_lock


def _write(path, host, pid, age=0.0):
  with open(path, "w") as f:
    json.dump({"host": host, "pid": pid, "started": 0}, f)
  if age:
    st = os.stat(path)
    os.utime(path, (st.st_atime - age, st.st_mtime - age))


def _dead_pid():
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_second_writer_is_refused_with_the_holders_name(tmp_path):
  with run_lock.RunLock(str(tmp_path)) as first:
    assert first.held and os.path.exists(first.path)
    # A live process on this host (our parent) holds it: refused at once, naming host and pid.
    _write(first.path, socket.gethostname(), os.getppid())
    with pytest.raises(run_lock.ModelDirLocked, match=f"pid {os.getppid()}"):
      run_lock.RunLock(str(tmp_path)).acquire()
  assert os.path.exists(first.path)  # Not ours any more: release leaves the holder's file.


def test_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
  path = os.path.join(tmp_path, run_lock.LOCK_NAME)
  _write(path, socket.gethostname(), _dead_pid())
  with caplog.at_level("WARNING"), run_lock.RunLock(str(tmp_path)) as lock:
    assert json.load(open(path))["pid"] == os.getpid() and lock.held
  assert any("is dead" in r.getMessage() for r in caplog.records)
  assert not os.path.exists(path)  # Released.


def test_stale_heartbeat_from_another_host_is_taken_over(tmp_path):
  path = os.path.join(tmp_path, run_lock.LOCK_NAME)
  _write(path, "some-other-host", 12345, age=600)
  with run_lock.RunLock(str(tmp_path), stale_seconds=300) as lock:
    assert json.load(open(path))["host"] == socket.gethostname() and lock.held


def test_heartbeat_notices_a_takeover(tmp_path):
  lock = run_lock.RunLock(str(tmp_path), stale_seconds=0.25).acquire()
  _write(lock.path, "some-other-host", 1)
  lock._thread.join(timeout=5)  # pylint: disable=protected-access
  assert lock.lost
  lock.release()
  assert json.load(open(lock.path))["host"] == "some-other-host"
