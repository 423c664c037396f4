"""Orbax checkpoints of the train state together with the data iterator position.

Layout under `<model_dir>/checkpoints/<step>/`:
  state/  the TrainState pytree (sharded arrays, written by every process in parallel)
  data/   JSON: the input pipeline position (batches consumed, seed, process count, batch size,
          mixture) so a resumed run sees exactly the examples it would have seen without the
          interruption, and a resume with different settings is refused.
  data_iterator/process_KKKKK-of-PPPPP.*  tf.data's iterator state (shuffle and prefetch buffers
          included), one entry per process, written when the iterator can save itself
          (pipeline.DataIterator): restoring it takes the same time at any position, where
          skipping to the position costs time proportional to it (see DataIteratorHandler).
and `<model_dir>/checkpoints/last_good.json`: the newest step judged healthy by the trainer (finite,
bounded loss), kept on disk outside the keep-N rotation so a diverged run can go back to it.

Saves are asynchronous (training continues while the previous step is written), finalised
atomically by orbax (a crash mid-write leaves a temporary directory that is never listed as a
step), and a latest checkpoint that fails to restore falls back to the previous one with a
one-line warning; the unreadable directory is moved aside (`<step>.corrupt-<time>`) so the step can
be saved again. Failure modes and their tests: docs/failure_modes.md.
"""

import dataclasses
import json
import logging
import os
import re
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from etils import epath
import gin
import jax
import orbax.checkpoint as ocp

PyTree = Any


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """When and how many checkpoints to keep.

  Attributes:
    save_every_steps: period of regular saves (the final step is always saved).
    keep: how many recent checkpoints to keep on disk.
    async_save: write in a background thread while training continues.
  """

  save_every_steps: int = 1000
  keep: int = 3
  async_save: bool = True

  def __post_init__(self):
    if self.save_every_steps < 1:
      raise ValueError(f"CheckpointConfig.save_every_steps={self.save_every_steps}: must be >= 1 "
                       "(the final step is always saved; use a large value to save rarely).")
    if self.keep < 1:
      raise ValueError(f"CheckpointConfig.keep={self.keep}: must be >= 1.")


def describe_error(error: BaseException, limit: int = 1000) -> str:
  """One line saying what failed and why: the innermost cause, without reprs of bound methods.

  TensorStore and orbax wrap the cause (file, array, errno) in several layers and reprs of the
  callables involved; this keeps the type and message of the deepest exception plus the outer one.
  """
  chain = [error]
  while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
    nxt = chain[-1].__cause__ or chain[-1].__context__
    if nxt in chain or len(chain) > 10:
      break
    chain.append(nxt)
  parts = []
  for e in (chain[-1], chain[0]) if len(chain) > 1 else (chain[0],):
    text = re.sub(r"<bound method [^>]*>+", "", str(e))
    text = re.sub(r"<[a-zA-Z_.]+ object at 0x[0-9a-f]+>", "", text)
    text = " ".join(text.split())
    parts.append(f"{type(e).__name__}: {text}" if text else type(e).__name__)
  line = " <- ".join(dict.fromkeys(parts))
  half = limit // 2 - 3  # Cut in the middle: the file comes first, the errno near the end.
  return line if len(line) <= limit else line[:half] + " ... " + line[-half:]


class _DropReraisedThreadErrors(logging.Filter):
  """Drops orbax's per-thread tracebacks of a failed save (one per array and writer thread,
  hundreds of lines for a full disk): the same error reaches `Checkpointer` and is raised as one
  line (CheckpointSaveError)."""

  PATTERNS = ("_SignalingThread.run() raised an exception", "in background save thread",
              "Save Finalize thread")

  def filter(self, record: logging.LogRecord) -> bool:
    return not any(p in str(record.msg) for p in self.PATTERNS)


_THREAD_ERROR_FILTER = _DropReraisedThreadErrors()


class CheckpointSaveError(RuntimeError):
  """A save failed (full disk, permissions); the message is one line with the cause."""


class Checkpointer:
  """Saves and restores (TrainState, data position) pairs under `directory`.

  Rotation keeps the newest `config.keep` steps plus the last-known-good step (`mark_good`).
  """

  def __init__(self, directory: str, config: CheckpointConfig = CheckpointConfig()):
    if "://" not in directory:  # orbax refuses relative local paths; gs:// etc. stay as given.
      directory = os.path.abspath(os.path.expanduser(directory))
    self.directory = directory
    self.config = config
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,  # Rotation is ours: it must spare the last-known-good step.
        save_interval_steps=1,  # We decide when to save (periodic, final, on signal).
        enable_async_checkpointing=config.async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(directory, options=options)
    for name in ("absl", ""):
      if _THREAD_ERROR_FILTER not in logging.getLogger(name).filters:
        logging.getLogger(name).addFilter(_THREAD_ERROR_FILTER)
    self._pending_good: Optional[Tuple[int, Dict[str, float]]] = None
    self.moved_aside: List[str] = []
    self._unreadable: set = set()  # Steps a restore failed on this run.

  def all_steps(self):
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  @property
  def _good_path(self) -> str:
    return os.path.join(self.directory, "last_good.json")

  def last_good(self) -> Optional[Dict[str, Any]]:
    """{"step": N, ...health figures} of the last-known-good checkpoint, or None."""
    try:
      with open(self._good_path) as f:
        info = json.load(f)
    except (OSError, ValueError):
      return None
    return info if info.get("step") in self.all_steps() else None

  def mark_good(self, step: int, info: Dict[str, float]) -> None:
    """Records `step` as last-known-good once its save is on disk (the next save or close)."""
    self._pending_good = (int(step), dict(info))

  def _commit_good(self) -> None:
    if self._pending_good is None:
      return
    step, info = self._pending_good
    self._pending_good = None
    if step not in self._manager.all_steps() or jax.process_index() != 0:
      return
    tmp = self._good_path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(dict(info, step=step), f)
    os.replace(tmp, self._good_path)

  def _rotate(self) -> None:
    good = self.last_good()
    keep = set(self.all_steps()[-self.config.keep:]) | ({good["step"]} if good else set())
    for step in self.all_steps():
      if step not in keep:
        self._manager.delete(step)

  def save(self, step: int, state: PyTree, data_state: Dict[str, Any], force: bool = False,
           data_iterator: Any = None) -> bool:
    """Starts saving `state` and `data_state` for `step`; returns whether a save was started.

    `data_iterator`: an iterator with `save(prefix)` (pipeline.DataIterator); its state is
    written synchronously (before this returns) into the same checkpoint, one entry per process.
    """
    if not force and step % self.config.save_every_steps:
      return False
    self._wait()  # The previous save is committed: it may become good.
    self._commit_good()
    self._rotate()
    if step in self._unreadable and step in self._manager.all_steps():
      logging.warning("Deleting the unreadable step %d (it could not be moved aside) to save it "
                      "again.", step)
      self._manager.delete(step)
    if step in self._manager.all_steps():
      return False
    items = dict(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(dict(data_state)))
    if data_iterator is not None and hasattr(data_iterator, "save"):
      items[DATA_ITERATOR_ITEM] = DataIteratorSave(data_iterator)
    try:
      return self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointSaveError(f"Saving step {step} under {self.directory} failed: "
                                f"{describe_error(e)}") from e

  def restore_data_iterator(self, step: int, data_iterator: Any) -> bool:
    """Restores `data_iterator`'s saved state from checkpoint `step`; False when there is none.

    None is saved for this process (an older checkpoint, another process count, an iterator
    that cannot restore itself): the caller's iterator then skips to its position instead.
    """
    if not hasattr(data_iterator, "restore"):
      return False
    entry = data_iterator_prefix(self._step_dir(step) / DATA_ITERATOR_ITEM)
    if not (entry.parent / (entry.name + ".index")).exists():
      logging.warning("Checkpoint %s/%d has no data iterator state for %s: the input pipeline "
                      "skips to its position instead (time grows with the position).",
                      self.directory, step, entry.name)
      return False
    self._manager.restore(step, args=ocp.args.Composite(
        **{DATA_ITERATOR_ITEM: DataIteratorRestore(data_iterator)}))
    return True

  def _step_dir(self, step: int):
    return epath.Path(self.directory) / str(step)

  def supersede_after(self, step: int) -> None:
    """Moves the steps newer than `step` aside (`<n>.superseded-<time>`): a resume from an
    earlier step starts a new history, whose saves must not collide with the old one's."""
    newer = [s for s in self.all_steps() if s > step]
    for s in newer:
      moved = self._move_aside(s, "superseded")
      logging.warning("Resuming from step %d: step %d %s.", step, s,
                      f"moved aside to {moved}" if moved else "left in place")
    if newer:
      self._manager.reload()

  def _move_aside(self, step: int, why: str = "corrupt") -> Optional[str]:
    """Renames `<dir>/<step>` to `<step>.<why>-<time>` (process 0, local directories)."""
    src = os.path.join(self.directory, str(step))
    dst = f"{src}.{why}-{time.strftime('%Y%m%d-%H%M%S')}"
    if jax.process_index() == 0 and "://" not in src and os.path.isdir(src):
      try:
        os.rename(src, dst)
        self.moved_aside.append(dst)
        return dst
      except OSError as e:
        logging.warning("Could not move the unreadable %s aside: %s", src, describe_error(e))
    return None

  def restore(self, abstract_state: PyTree,
              step: Optional[int] = None) -> Tuple[int, PyTree, Dict[str, Any]]:
    """Restores into the shardings/dtypes of `abstract_state` (a tree of jax.ShapeDtypeStruct).

    Without `step`, tries the newest checkpoint first and falls back to older ones if it is
    unreadable (e.g. a truncated array file), with one warning line per skipped step; once an
    older step restored, the unreadable newer directories are moved aside as
    `<step>.corrupt-<time>` so that the run can save those steps again. With `step`, restores
    exactly that step (`--resume_step`) and raises if it is unreadable.
    """
    available = self.all_steps()
    if step is not None and step not in available:
      raise FileNotFoundError(f"No checkpoint for step {step} under {self.directory}; "
                              f"it holds steps {available}.")
    steps = [step] if step is not None else sorted(available, reverse=True)
    if not steps:
      raise FileNotFoundError(f"No checkpoint under {self.directory} to resume from.")
    errors = []
    for candidate in steps:
      try:
        restored = self._manager.restore(
            candidate,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                    data=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        message = f"step {candidate}: {describe_error(e)}"
        logging.warning("Checkpoint %s/%d is unreadable, trying an older one: %s",
                        self.directory, candidate, describe_error(e))
        errors.append((candidate, message))
        self._unreadable.add(candidate)
        continue
      for bad, _ in errors:
        moved = self._move_aside(bad)
        logging.warning("Resumed from step %d; unreadable step %d %s.", candidate, bad,
                        f"moved aside to {moved}" if moved else "left in place")
      if errors:
        self._manager.reload()
      return candidate, restored["state"], dict(restored["data"])
    raise RuntimeError(f"No readable checkpoint under {self.directory}: "
                       + " | ".join(m for _, m in errors))

  def restore_raw(self, step: Optional[int] = None) -> Tuple[int, PyTree, Dict[str, Any]]:
    """Restores a checkpoint whole onto this process's first device, whatever mesh and process
    count saved it (e.g. a 2-host run read back by one process): for inspection tools and tests.
    """
    step = self.latest_step() if step is None else step
    meta = ocp.StandardCheckpointHandler().metadata(self._step_dir(step) / "state")
    tree = getattr(meta, "tree", meta)
    one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device), tree)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return step, restored["state"], dict(restored["data"])

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk (then rotates)."""
    self._wait()
    self._commit_good()
    self._rotate()

  def _wait(self) -> None:
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointSaveError(f"An asynchronous save under {self.directory} failed: "
                                f"{describe_error(e)}") from e

  def close(self) -> None:
    self._wait()
    self._commit_good()
    self._rotate()
    self._manager.close()


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the train loop polls, so it can save before exiting.

  A second SIGINT while the save is in progress is ignored; preemption notices on TPU/GPU
  clusters arrive as SIGTERM.

  In a multi-process job every process must stop after the same step (the next step's collectives
  would otherwise wait forever for the processes that left), and once `jax.distributed` is
  initialised JAX's preemption service owns SIGTERM (`jax.distributed.initialize` replaces this
  handler): `should_stop(step)` asks it whether all processes reached the step at which to stop,
  one step after the latest any of them had reached when the first notice arrived. A SIGINT to
  one process is passed on to it as that process's SIGTERM, so Ctrl-C stops the whole job too.
  """

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self._event = threading.Event()
    self._signum: Optional[int] = None
    self._previous: Dict[int, Callable] = {}
    self._forwarded = False
    self._warned = False
    if threading.current_thread() is threading.main_thread():
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if not self._event.is_set():
      logging.warning("Received %s: saving a checkpoint and stopping after this step.",
                      signal.Signals(signum).name)
    self._signum = signum
    self._event.set()

  @property
  def requested(self) -> bool:
    return self._event.is_set()

  @property
  def signum(self) -> Optional[int]:
    return self._signum

  def should_stop(self, step: int) -> bool:
    """Whether to stop before running step `step + 1`; call it once per step, on every process.

    Without `jax.distributed`: whether a signal arrived. With it (also a job of one process,
    e.g. SLAM_DISTRIBUTED=auto on a one-host TPU slice, where the service owns SIGTERM too):
    whether JAX's preemption service says that all processes have reached the agreed stop step
    (True on every process at the same `step`).
    """
    if not jax.distributed.is_initialized():
      return self.requested
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    if distributed.global_state.preemption_sync_manager is None:  # No public accessor.
      if not self._warned:  # jax_enable_preemption_service=False
        logging.warning("JAX's preemption service is off: a signal stops only the process that "
                        "received it, and the others then wait at the next step.")
        self._warned = True
      return self.requested
    if self._event.is_set() and not self._forwarded:  # A local SIGINT: notify every process.
      self._forwarded = True
      os.kill(os.getpid(), signal.SIGTERM)
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if multihost_utils.reached_preemption_sync_point(step):
      if not self._event.is_set():
        logging.warning("Preemption notice: saving a checkpoint of step %d and stopping.", step)
        self._signum = self._signum or signal.SIGTERM
        self._event.set()
      return True
    return False

  def restore_handlers(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}


def abstract_like(tree: PyTree, shardings: PyTree) -> PyTree:
  """ShapeDtypeStructs carrying `shardings`: what `Checkpointer.restore` restores into."""
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


# --- Input iterator state: one entry per process inside the step's orbax checkpoint -----------

DATA_ITERATOR_ITEM = "data_iterator"


def data_iterator_prefix(directory) -> epath.Path:
  """This process's entry in a checkpoint's data_iterator/ item (a tf checkpoint prefix)."""
  return epath.Path(directory) / (f"process_{jax.process_index():05d}-of-"
                                  f"{jax.process_count():05d}")


class DataIteratorHandler(ocp.CheckpointHandler):
  """Writes/reads an iterator's own state (`it.save(prefix)` / `it.restore(prefix)`).

  Every process writes its own entry (like t5x's per-host tf.data checkpoints and Grain's
  per-process JSON); the save is synchronous so the state is the one at the step saved, while the
  model arrays are still written in the background. An entry from another process count is not
  found, and the caller falls back to skipping.
  """

  def save(self, directory: epath.Path, args: "DataIteratorSave") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    args.iterator.save(str(data_iterator_prefix(directory)))

  def restore(self, directory: epath.Path, args: "DataIteratorRestore") -> Any:
    args.iterator.restore(str(data_iterator_prefix(directory)))
    return args.iterator


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
  iterator: Any


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
  iterator: Any
