"""Orbax checkpoints of the train state together with the data iterator position.

Layout under `<model_dir>/checkpoints/<step>/`:
  state/  the TrainState pytree (sharded arrays, written by every process in parallel)
  data/   JSON: the input pipeline position (batches consumed, seed, mixture) so a resumed run sees
          exactly the examples it would have seen without the interruption.
  data_iterator/process_KKKKK-of-PPPPP.*  tf.data's iterator state (shuffle and prefetch buffers
          included), one entry per process, written when the iterator can save itself
          (pipeline.DataIterator): restoring it takes the same time at any position, where
          skipping to the position costs time proportional to it (see DataIteratorHandler).

Saves are asynchronous (training continues while the previous step is written), finalised
atomically by orbax (a crash mid-write leaves a temporary directory that is never listed as a
step), and a latest checkpoint that fails to restore falls back to the previous one with a warning.
"""

import dataclasses
import logging
import signal
import threading
from typing import Any, Callable, Dict, Optional, Tuple

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


class Checkpointer:
  """Saves and restores (TrainState, data position) pairs under `directory`."""

  def __init__(self, directory: str, config: CheckpointConfig = CheckpointConfig()):
    self.directory = directory
    self.config = config
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep,
        save_interval_steps=1,  # We decide when to save (periodic, final, on signal).
        enable_async_checkpointing=config.async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(directory, options=options)

  def all_steps(self):
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: PyTree, data_state: Dict[str, Any], force: bool = False,
           data_iterator: Any = None) -> bool:
    """Starts saving `state` and `data_state` for `step`; returns whether a save was started.

    `data_iterator`: an iterator with `save(prefix)` (pipeline.DataIterator); its state is
    written synchronously (before this returns) into the same checkpoint, one entry per process.
    """
    if not force and step % self.config.save_every_steps:
      return False
    if step in self._manager.all_steps():
      return False
    items = dict(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(dict(data_state)))
    if data_iterator is not None and hasattr(data_iterator, "save"):
      items[DATA_ITERATOR_ITEM] = DataIteratorSave(data_iterator)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=True)

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

  def restore(self, abstract_state: PyTree,
              step: Optional[int] = None) -> Tuple[int, PyTree, Dict[str, Any]]:
    """Restores into the shardings/dtypes of `abstract_state` (a tree of jax.ShapeDtypeStruct).

    Without `step`, tries the newest checkpoint first and falls back to older ones if it is
    unreadable (e.g. a partially deleted or corrupted directory), warning for each skipped step.
    """
    steps = [step] if step is not None else sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"No checkpoint under {self.directory} to resume from.")
    errors = []
    for candidate in steps:
      try:
        restored = self._manager.restore(
            candidate,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                    data=ocp.args.JsonRestore()))
        if errors:
          logging.warning("Resumed from step %d after skipping unreadable checkpoints: %s",
                          candidate, "; ".join(errors))
        return candidate, restored["state"], dict(restored["data"])
      except Exception as e:  # pylint: disable=broad-except
        message = f"step {candidate}: {type(e).__name__}: {str(e)[:200]}"
        logging.warning("Checkpoint %s/%d is unreadable, trying an older one (%s).",
                        self.directory, candidate, message)
        errors.append(message)
    raise RuntimeError(f"No readable checkpoint under {self.directory}: " + " | ".join(errors))

  def restore_raw(self, step: Optional[int] = None) -> Tuple[int, PyTree, Dict[str, Any]]:
    """Restores a checkpoint as saved (no target shardings): for inspection tools and tests."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()))
    return step, restored["state"], dict(restored["data"])

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class StopSignal:
  """Turns SIGTERM/SIGINT into a flag the train loop polls, so it can save before exiting.

  A second SIGINT while the save is in progress is ignored; preemption notices on TPU/GPU
  clusters arrive as SIGTERM.
  """

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self._event = threading.Event()
    self._signum: Optional[int] = None
    self._previous: Dict[int, Callable] = {}
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
