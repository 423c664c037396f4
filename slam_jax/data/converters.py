"""`SlamFeatureConverter`: seqio task features -> fixed-shape model features (slam_jax/types.py).

Task features (every task of a mixture has all three):
  speech  float32 [frames, bins]   empty ([0, bins]) for text rows
  text    int32   [tokens]         empty for speech rows; ends with EOS
  kind    int32   []               types.KIND_*

Model features for task_feature_lengths {"speech": F, "text": L}:
  speech_features [F, bins] (truncated / zero-padded), speech_mask [F] (1 = real frame),
  text_tokens [L], text_segment_ids [L] (1 for a paired or unpacked text row, 1..k when k
  text examples are packed, 0 = padding), text_positions [L] (position inside its segment), kind.

Packing (`pack=True`) applies to TEXT rows only: the mixed stream is grouped by kind with
`group_by_window`; every `pack_window` text rows are packed together (seqio's
`trim_and_pack_dataset`) and emitted as soon as the window is full, while speech and paired rows
pass through at once. The order is deterministic. Consequence for mixture rates: a rate is a
share of *examples* before packing, so text's share of *rows* shrinks by its packing factor
(about L / mean text length). To get a target share of text rows, multiply the text rate by
that factor (`packing_factor` measures it).

The base class's `pack` property stays False (its checks require rank-1 features everywhere);
read `pack_text` instead.
"""

from typing import Mapping

import gin
import numpy as np
import seqio
import tensorflow as tf

from slam_jax import types

_Spec = seqio.FeatureConverter.FeatureSpec


def _kind(ex) -> tf.Tensor:
  """The example's kind as an int32 scalar, from the task feature ([1], or a scalar)."""
  return tf.reshape(tf.cast(ex[types.TASK_KIND], tf.int32), [])


@gin.configurable(module="slam_jax.data.converters")
class SlamFeatureConverter(seqio.FeatureConverter):
  """Maps {speech, text, kind} to the SLAM model batch row (see module docstring).

  gin-configurable for t5x, whose `utils.get_dataset` builds the converter with `pack` only:
  bind `SlamFeatureConverter.pack_window` there (slam_jax.data.pipeline passes it explicitly).
  """

  TASK_FEATURES = {
      types.TASK_SPEECH: _Spec(dtype=tf.float32, rank=2),
      types.TASK_TEXT: _Spec(dtype=tf.int32),
  }
  MODEL_FEATURES = {
      types.SPEECH_FEATURES: _Spec(dtype=tf.float32, rank=2),
      types.SPEECH_MASK: _Spec(dtype=tf.int32),
      types.TEXT_TOKENS: _Spec(dtype=tf.int32),
      types.TEXT_SEGMENT_IDS: _Spec(dtype=tf.int32),
      types.TEXT_POSITIONS: _Spec(dtype=tf.int32),
      types.KIND: _Spec(dtype=tf.int32, rank=0),
  }
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, pack: bool = False, pack_window: int = 128,
               num_mel_bins: int = types.NUM_MEL_BINS, **kwargs):
    """Args:
      pack: pack TEXT rows (several examples per row).
      pack_window: text rows packed together at once (a larger window packs tighter and delays
        text rows more).
      num_mel_bins: feature dimension of `speech`.
      **kwargs: seqio.FeatureConverter options (apply_length_check, ...); `pack` there is
        always False.
    """
    kwargs.pop("use_custom_packing_ops", None)
    super().__init__(pack=False, **kwargs)
    if pack_window < 1:
      raise ValueError(f"pack_window must be >= 1, got {pack_window}")
    self._pack_text = pack
    self._pack_window = pack_window
    self._num_mel_bins = num_mel_bins

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
               ) -> tf.data.Dataset:
    # seqio's Evaluator passes a length for every task feature it measured, 'kind' ([1]) too;
    # kind is not padded, so its length is dropped before seqio's check against TASK_FEATURES.
    lengths = {k: v for k, v in task_feature_lengths.items() if k != types.TASK_KIND}
    return super().__call__(ds, lengths)

  @property
  def pack_text(self) -> bool:
    return self._pack_text

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    frames = task_feature_lengths[types.TASK_SPEECH]
    tokens = task_feature_lengths[types.TASK_TEXT]
    return {types.SPEECH_FEATURES: frames, types.SPEECH_MASK: frames, types.TEXT_TOKENS: tokens,
            types.TEXT_SEGMENT_IDS: tokens, types.TEXT_POSITIONS: tokens, types.KIND: 1}

  # --- conversion -----------------------------------------------------------------------------
  def _pad_row(self, ex, frames: int, tokens: int):
    speech = ex[types.TASK_SPEECH][:frames]
    n = tf.shape(speech)[0]
    speech = tf.pad(speech, [[0, frames - n], [0, 0]])
    speech = tf.ensure_shape(speech, [frames, self._num_mel_bins])
    mask = tf.sequence_mask(n, frames, dtype=tf.int32)
    text = ex[types.TASK_TEXT][:tokens]
    m = tf.shape(text)[0]
    real = tf.sequence_mask(m, tokens, dtype=tf.int32)
    return {
        types.SPEECH_FEATURES: speech,
        types.SPEECH_MASK: mask,
        types.TEXT_TOKENS: tf.ensure_shape(tf.pad(text, [[0, tokens - m]]), [tokens]),
        types.TEXT_SEGMENT_IDS: real,
        types.TEXT_POSITIONS: tf.range(tokens, dtype=tf.int32) * real,
        types.KIND: _kind(ex),
    }

  def _packed_text_row(self, ex, frames: int, tokens: int):
    return {
        types.SPEECH_FEATURES: tf.zeros([frames, self._num_mel_bins], tf.float32),
        types.SPEECH_MASK: tf.zeros([frames], tf.int32),
        types.TEXT_TOKENS: tf.ensure_shape(ex[types.TASK_TEXT], [tokens]),
        types.TEXT_SEGMENT_IDS: tf.ensure_shape(ex[types.TASK_TEXT + "_segment_ids"], [tokens]),
        types.TEXT_POSITIONS: tf.ensure_shape(ex[types.TASK_TEXT + "_positions"], [tokens]),
        types.KIND: tf.constant(types.KIND_TEXT, tf.int32),
    }

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    if types.TASK_KIND not in ds.element_spec:
      raise ValueError(f"SlamFeatureConverter: the dataset has no '{types.TASK_KIND}' feature "
                       f"(features: {sorted(ds.element_spec)}); every slam task must emit "
                       "speech, text and kind (see tasks/common.py)")
    frames = int(task_feature_lengths[types.TASK_SPEECH])
    tokens = int(task_feature_lengths[types.TASK_TEXT])
    pad = lambda ex: self._pad_row(ex, frames, tokens)
    if not self._pack_text:
      return ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE)

    def key_fn(ex):
      return tf.cast(tf.equal(_kind(ex), types.KIND_TEXT), tf.int64)

    def reduce_fn(key, window):
      is_text = tf.equal(key, 1)
      text_only = window.filter(lambda ex: is_text).map(
          lambda ex: {types.TASK_TEXT: ex[types.TASK_TEXT]})
      packed = seqio.utils.trim_and_pack_dataset(text_only, {types.TASK_TEXT: tokens})
      packed = packed.map(lambda ex: self._packed_text_row(ex, frames, tokens))
      others = window.filter(lambda ex: tf.logical_not(is_text)).map(pad)
      return packed.concatenate(others)

    def window_size_fn(key):
      return tf.where(tf.equal(key, 1), tf.constant(self._pack_window, tf.int64),
                      tf.constant(1, tf.int64))

    return ds.group_by_window(key_func=key_fn, reduce_func=reduce_fn,
                              window_size_func=window_size_fn)


def packing_factor(batches) -> float:
  """Mean text examples per TEXT row over an iterable of numpy model batches."""
  examples = rows = 0
  for b in batches:
    text_rows = np.asarray(b[types.KIND]) == types.KIND_TEXT
    seg = np.asarray(b[types.TEXT_SEGMENT_IDS])[text_rows]
    rows += int(text_rows.sum())
    examples += int(seg.max(axis=1).sum()) if seg.size else 0
  return examples / max(rows, 1)
