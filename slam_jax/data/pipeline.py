"""Train/eval iterators of numpy model batches, and how a resumed run finds its data position.

  it = make_train_iterator(mixture_or_task_name="slam_demo", batch_size=per_host_rows,
                           feature_lengths={"speech": 600, "text": 64},
                           shard_info=seqio.ShardInfo(jax.process_index(), jax.process_count()),
                           seed=0, start_batch=0)
  batch = next(it)          # {model feature: np.ndarray [per_host_rows, ...]} (slam_jax/types.py)
  it.state()                # {"batches_consumed": ..., "seed": ..., ...}: save with the checkpoint

Resuming. The pipeline is deterministic given (mixture, feature lengths, seed, ShardInfo,
per-host batch size, pack settings): sources list and shuffle files with the seed, every shuffle
and the mixture's sampling are seeded, tf.data keeps `deterministic=True`. Two ways back to the
same position, both reproduce the next batch exactly (tests/data/test_pipeline.py):

  1. tf.data's own iterator state (shuffle and prefetch buffers included), restored in a time
     that does not depend on the position. slam_jax/train.py saves it inside each orbax
     checkpoint (`data_iterator/process_K-of-P`, checkpoints.DataIteratorHandler) and restores
     it with `Checkpointer.restore_data_iterator` before the first `next`; by hand:
     `it.save(prefix)`, then `make_train_iterator(..., start_batch=n, checkpoint_path=prefix)`.
     `python -m slam_jax.data.bench --resume` measures it. Filter counters are not part of it.
  2. `start_batch=n` alone (the fallback when no state was saved for this process, e.g. the
     process count changed): the iterator skips n batches with `Dataset.skip` before the first
     `next`. Always valid when the settings above are unchanged, but the skipped batches are
     still read and featurised (cost ~ n / pipeline rate, ~0.13 s per demo batch of 24).

Changing the process count or per-host batch size changes the order: such a resume starts the
stream afresh with a different seed-equivalent order (it does not repeat data deterministically).

gin (the trainer's `make_data`; import the modules so gin knows them):
  import slam_jax.data.pipeline
  import tasks
  slam_jax.train.train.make_data = @slam_jax.data.pipeline.make_train_iterator
  slam_jax.data.pipeline.make_train_iterator.mixture_or_task_name = %MIXTURE_OR_TASK_NAME
  tasks.common.demo_data_dir.data_dir = '/path/to/demo'      # or $SLAM_DATA_DIR

Evaluation: `get_model_dataset(TASK, split="validation", shuffle=False, num_epochs=1,
batch_size=B)` per task (a mixture with num_epochs=1 stops when its first task runs out;
drop_remainder drops the last partial batch).
"""

import functools
import logging
import os
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

import gin
import numpy as np
import seqio
import tensorflow as tf

from slam_jax import types
from slam_jax.data import converters

# Defaults: the demo corpus (utterances <= ~5.7 s, sentences <= ~31 tokens with EOS) and a
# LibriSpeech / Libri-Light / C4 pre-training run (16 s, 256 tokens).
DEMO_FEATURE_LENGTHS = {types.TASK_SPEECH: 600, types.TASK_TEXT: 64}
PRETRAIN_FEATURE_LENGTHS = {types.TASK_SPEECH: 1600, types.TASK_TEXT: 256}


def hide_accelerators_from_tf() -> None:
  """TensorFlow is only the input pipeline: keep it off GPUs/TPUs (no-op when already set)."""
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):
    pass


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  # Filter counters are tf.Variables: let iterator checkpoints skip them instead of failing.
  options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.WARN
  return options


@gin.configurable
def get_model_dataset(mixture_or_task_name: str = gin.REQUIRED, *,
                      feature_lengths: Mapping[str, int] = gin.REQUIRED,
                      batch_size: Optional[int] = None, split: str = "train",
                      shard_info: Optional[seqio.ShardInfo] = None, seed: Optional[int] = 0,
                      shuffle: bool = True, num_epochs: Optional[int] = None,
                      pack: bool = False, pack_window: int = 128,
                      use_cached: bool = False,
                      cache_dirs: Sequence[str] = ()) -> tf.data.Dataset:
  """A tf.data.Dataset of model batches (or rows when batch_size is None).

  Args:
    mixture_or_task_name: registered seqio task or mixture (import `tasks` first).
    feature_lengths: {"speech": frames, "text": tokens} (TASK_FEATURE_LENGTHS).
    batch_size: rows per batch on this process (drop_remainder=True); None: unbatched rows.
    split: "train" or "validation".
    shard_info: this process's shard; None = the whole split.
    seed: shuffling/mixing seed; None = nondeterministic.
    shuffle: shuffle files and examples.
    num_epochs: passes over each task; None = repeat forever (training).
    pack: pack TEXT rows (see converters.SlamFeatureConverter).
    pack_window: text rows packed together.
    use_cached: read the text tasks from seqio's offline cache (written by
      `python -m seqio.scripts.cache_tasks_main`); speech and paired tasks, which have no
      cache step, are read as usual.
    cache_dirs: where that cache lies (seqio.add_global_cache_dirs).
  """
  hide_accelerators_from_tf()
  if cache_dirs:
    seqio.add_global_cache_dirs(list(cache_dirs))
  converter = converters.SlamFeatureConverter(pack=pack, pack_window=pack_window)
  ds = seqio.get_dataset(mixture_or_task_name, task_feature_lengths=dict(feature_lengths),
                         feature_converter=converter, dataset_split=split,
                         use_cached=use_cached, shuffle=shuffle, num_epochs=num_epochs,
                         shard_info=shard_info, seed=seed, batch_size=batch_size, verbose=False)
  return ds.with_options(_options()).prefetch(tf.data.AUTOTUNE)


class DataIterator:
  """Iterator of numpy model batches that knows its position (see module docstring).

  `dataset` starts at batch 0; the iterator is built on the first `next`: skipping
  `start_batch` batches then, unless `restore` was called first (then it continues from the
  restored state and skips nothing). Both graphs end in the same `skip` node, so a state saved
  after a skipping resume restores too.
  """

  def __init__(self, dataset: tf.data.Dataset, *, start_batch: int = 0, seed: Optional[int] = 0,
               description: Optional[Dict[str, Any]] = None,
               rebuild: Optional[Callable[[], tf.data.Dataset]] = None):
    """`rebuild` makes `dataset` afresh: after a refused state, a new iterator of the old dataset
    object would see its shuffle/mixing seed generators one epoch on (another order)."""
    self._dataset = dataset
    self._rebuild = rebuild
    self._iterator = None
    self._start_batch = int(start_batch)
    self.batches_consumed = int(start_batch)
    self._seed = seed
    self._description = dict(description or {})

  def _tf_iterator(self, skip: Optional[int] = None):
    if self._iterator is None:
      self._iterator = iter(self._dataset.skip(self._start_batch if skip is None else skip))
    return self._iterator

  def __iter__(self) -> Iterator[types.Batch]:
    return self

  def __next__(self) -> types.Batch:
    batch = next(self._tf_iterator())
    self.batches_consumed += 1
    return {k: v.numpy() for k, v in batch.items()}

  @property
  def element_spec(self):
    return self._dataset.element_spec

  def state(self) -> Dict[str, Any]:
    """JSON-serialisable position: store it with the model checkpoint."""
    return dict(self._description, batches_consumed=self.batches_consumed, seed=self._seed)

  def save(self, path: str) -> str:
    """Writes tf.data's iterator state to `path` (a file prefix, one per process)."""
    if "://" not in path:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ckpt = tf.train.Checkpoint(iterator=self._tf_iterator())
    out = ckpt.write(path)
    with tf.io.gfile.GFile(path + ".position", "w") as f:
      f.write(str(self.batches_consumed))
    return out

  def restore(self, path: str) -> None:
    """Restores the state written by `save(path)`, before the first `next`.

    Raises:
      ValueError: the state is at another position than the `start_batch` this iterator was
        made for (a data state from another checkpoint), or batches were already taken.
      IteratorStateMismatch: the state was saved by another input pipeline (another slam_jax
        version, other data settings or task definitions); this iterator is left as it was, so
        it still skips to `start_batch` on its first `next`.
    """
    if self._iterator is not None:
      raise ValueError(f"DataIterator.restore({path}) after batches were taken: restore first")
    with tf.io.gfile.GFile(path + ".position") as f:
      position = int(f.read().strip())
    if position != self._start_batch:
      raise ValueError(f"{path} holds the position after {position} batches but the run "
                       f"resumes at {self._start_batch}: pass the matching checkpoint or no "
                       "checkpoint_path (then the iterator skips).")
    try:
      tf.train.Checkpoint(iterator=self._tf_iterator(skip=0)).read(path).assert_consumed()
    except (tf.errors.OpError, AssertionError) as e:
      self._iterator = None  # Not half-restored: the first `next` skips instead.
      if self._rebuild is not None:
        self._dataset = self._rebuild()
      else:
        logging.warning("%s: refused state; the skipping resume reads another order than a "
                        "fresh run (DataIterator has no `rebuild`)", path)
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise IteratorStateMismatch(
          f"{path}: the saved input iterator state does not fit this input pipeline (it was "
          f"saved by another slam_jax version, other data settings or task definitions): "
          f"{first_line[:300]}") from e
    self.batches_consumed = position


class IteratorStateMismatch(ValueError):
  """A saved tf.data iterator state that the current pipeline's graph cannot take."""


@gin.configurable
def make_train_iterator(*, mixture_or_task_name: str = gin.REQUIRED, batch_size: int,
                        feature_lengths: Mapping[str, int],
                        shard_info: Optional[seqio.ShardInfo] = None, seed: Optional[int] = 0,
                        start_batch: int = 0, checkpoint_path: Optional[str] = None,
                        split: str = "train", shuffle: bool = True,
                        num_epochs: Optional[int] = None, pack: bool = False,
                        pack_window: int = 128) -> DataIterator:
  """The trainer's `make_data`: an endless DataIterator of per-process numpy model batches.

  Args:
    mixture_or_task_name: MIXTURE_OR_TASK_NAME.
    batch_size: rows per batch on this process (global batch / process count).
    feature_lengths: TASK_FEATURE_LENGTHS, {"speech": frames, "text": tokens}.
    shard_info: seqio.ShardInfo(process_index, process_count).
    seed: data order seed (the run seed).
    start_batch: batches this process already consumed (resume).
    checkpoint_path: a DataIterator.save() prefix to restore from when it exists.
    split, shuffle, num_epochs, pack, pack_window: see get_model_dataset.
  """
  build = functools.partial(
      get_model_dataset, mixture_or_task_name, feature_lengths=feature_lengths,
      batch_size=batch_size, split=split, shard_info=shard_info, seed=seed, shuffle=shuffle,
      num_epochs=num_epochs, pack=pack, pack_window=pack_window)
  description = {"mixture_or_task_name": mixture_or_task_name, "batch_size": batch_size,
                 "shard_index": shard_info.index if shard_info else 0,
                 "num_shards": shard_info.num_shards if shard_info else 1}
  it = DataIterator(build(), start_batch=start_batch, seed=seed, description=description,
                    rebuild=build)
  if checkpoint_path and tf.io.gfile.exists(checkpoint_path + ".index"):
    it.restore(checkpoint_path)
  return it


def take_batches(it, n: int):
  """The next `n` batches of `it` as a list (tests, benchmarks)."""
  return [next(it) for _ in range(n)]


def stack(batches) -> types.Batch:
  """Concatenates numpy batches along the batch axis."""
  return {k: np.concatenate([b[k] for b in batches], axis=0) for k in batches[0]}
