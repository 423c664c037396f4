"""Fine-tuning and evaluation batches: the SLAM model batch plus extra scalar features ('label').

  make_finetune_iterator(...)   the fine-tuning loop's `make_data` (endless, shuffled, resumable)
  eval_batches(...)             one pass over a split, the last batch padded with copies of the
                                first row marked `valid` = 0 (no example is dropped)
"""

from typing import Iterator, Mapping, Optional, Sequence

import gin
import numpy as np
import seqio
import tensorflow as tf

from slam_jax import types
from slam_jax.data import converters
from slam_jax.data import pipeline
from slam_jax.finetune import task_model

_Spec = seqio.FeatureConverter.FeatureSpec


class DownstreamFeatureConverter(converters.SlamFeatureConverter):
  """SlamFeatureConverter (no packing) that also passes int32 scalar features through."""

  def __init__(self, extra_features: Sequence[str] = (), **kwargs):
    super().__init__(pack=False, **kwargs)
    self._extra = tuple(extra_features)
    self.MODEL_FEATURES = dict(converters.SlamFeatureConverter.MODEL_FEATURES,  # pylint: disable=invalid-name
                               **{n: _Spec(dtype=tf.int32, rank=0) for n in self._extra})

  def get_model_feature_lengths(self, task_feature_lengths):
    out = dict(super().get_model_feature_lengths(task_feature_lengths))
    out.update({n: 1 for n in self._extra})
    return out

  def _pad_row(self, ex, frames, tokens):
    row = super()._pad_row(ex, frames, tokens)
    for name in self._extra:
      if name not in ex:
        raise ValueError(f"The task has no '{name}' feature (features: {sorted(ex)}): a "
                         "classifier needs a classification task (tasks/downstream.py)")
      row[name] = tf.ensure_shape(tf.cast(ex[name], tf.int32), [])
    return row


def get_dataset(mixture_or_task_name: str, *, feature_lengths: Mapping[str, int],
                extra_features: Sequence[str] = (), batch_size: Optional[int] = None,
                split: str = "train", shard_info: Optional[seqio.ShardInfo] = None,
                seed: Optional[int] = 0, shuffle: bool = True,
                num_epochs: Optional[int] = None) -> tf.data.Dataset:
  pipeline.hide_accelerators_from_tf()
  converter = DownstreamFeatureConverter(extra_features)
  ds = seqio.get_dataset(mixture_or_task_name, task_feature_lengths=dict(feature_lengths),
                         feature_converter=converter, dataset_split=split, use_cached=False,
                         shuffle=shuffle, num_epochs=num_epochs, shard_info=shard_info,
                         seed=seed, batch_size=batch_size, verbose=False)
  return ds.prefetch(tf.data.AUTOTUNE)


@gin.configurable
def make_finetune_iterator(*, mixture_or_task_name: str = gin.REQUIRED, batch_size: int,
                           feature_lengths: Mapping[str, int],
                           extra_features: Sequence[str] = (),
                           shard_info: Optional[seqio.ShardInfo] = None, seed: Optional[int] = 0,
                           start_batch: int = 0, split: str = "train"):
  """Endless iterator of per-process numpy batches (resumes by skipping `start_batch`)."""
  ds = get_dataset(mixture_or_task_name, feature_lengths=feature_lengths,
                   extra_features=extra_features, batch_size=batch_size, split=split,
                   shard_info=shard_info, seed=seed, shuffle=True, num_epochs=None)
  if start_batch:
    ds = ds.skip(start_batch)
  return pipeline.DataIterator(ds, start_batch=start_batch, seed=seed,
                               description={"mixture_or_task_name": mixture_or_task_name})


def eval_batches(task_name: str, *, batch_size: int, feature_lengths: Mapping[str, int],
                 extra_features: Sequence[str] = (), split: str = "validation",
                 max_examples: Optional[int] = None) -> Iterator[types.Batch]:
  """One ordered pass over `split`, in batches of exactly `batch_size` rows with a `valid`
  feature (the last batch is padded with copies of its first row, valid = 0)."""
  ds = get_dataset(task_name, feature_lengths=feature_lengths, extra_features=extra_features,
                   batch_size=None, split=split, seed=0, shuffle=False, num_epochs=1)
  if max_examples:
    ds = ds.take(max_examples)
  rows = []
  for ex in ds.as_numpy_iterator():
    rows.append(ex)
    if len(rows) == batch_size:
      yield _stack(rows, batch_size)
      rows = []
  if rows:
    yield _stack(rows, batch_size)


def _stack(rows, batch_size: int) -> types.Batch:
  n = len(rows)
  padded = rows + [rows[0]] * (batch_size - n)
  batch = {k: np.stack([r[k] for r in padded]) for k in rows[0]}
  batch[task_model.VALID] = (np.arange(batch_size) < n).astype(np.int32)
  return batch
