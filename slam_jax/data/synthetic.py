"""Generated model batches (no files): smoke tests, benchmarks and the 8-device equivalence test.

Batch `i` is a pure function of (seed, shard, i), so resuming at `start_batch` reproduces the
uninterrupted stream exactly. Rows cycle through the three kinds (text, speech, paired) so every
objective sees examples; lengths vary so padding is exercised.
"""

from typing import Dict, Iterator, Mapping, Optional

import gin
import numpy as np

from slam_jax import types


def synthetic_batch(rng: np.random.Generator, batch_size: int, speech_frames: int,
                    text_length: int, vocab_size: int,
                    num_mel_bins: int = types.NUM_MEL_BINS) -> Dict[str, np.ndarray]:
  """One host-local model batch with every feature of `types.MODEL_FEATURES`."""
  kind = np.arange(batch_size, dtype=np.int32) % 3  # text, speech, paired, text, ...
  speech_len = rng.integers(speech_frames // 2, speech_frames + 1, size=batch_size)
  text_len = rng.integers(max(text_length // 2, 2), text_length + 1, size=batch_size)
  has_speech = kind != types.KIND_TEXT
  has_text = kind != types.KIND_SPEECH
  speech_len = np.where(has_speech, speech_len, 0)
  text_len = np.where(has_text, text_len, 0)
  frame_ids = np.arange(speech_frames)[None, :]
  token_ids = np.arange(text_length)[None, :]
  speech_mask = (frame_ids < speech_len[:, None]).astype(np.int32)
  text_valid = token_ids < text_len[:, None]
  features = rng.standard_normal((batch_size, speech_frames, num_mel_bins)).astype(np.float32)
  tokens = rng.integers(3, max(vocab_size - 1, 4), size=(batch_size, text_length))
  tokens = np.where(text_valid, tokens, 0).astype(np.int32)
  # The last real token of each sentence is EOS (id 1), as seqio appends it.
  last = np.clip(text_len - 1, 0, None)
  rows = np.nonzero(text_len > 0)[0]
  tokens[rows, last[rows]] = 1
  return {
      types.SPEECH_FEATURES: (features * speech_mask[..., None]).astype(np.float32),
      types.SPEECH_MASK: speech_mask,
      types.TEXT_TOKENS: tokens,
      types.TEXT_SEGMENT_IDS: text_valid.astype(np.int32),
      types.TEXT_POSITIONS: np.where(text_valid, token_ids, 0).astype(np.int32),
      types.KIND: kind,
  }


class SyntheticIterator:
  """Deterministic, resumable stream of generated batches."""

  def __init__(self, batch_size: int, feature_lengths: Mapping[str, int], vocab_size: int,
               seed: int = 0, shard_index: int = 0, start_batch: int = 0,
               nan_at_batches: tuple = (), fixed_batch: bool = False):
    self.batch_size = batch_size
    self.speech_frames = int(feature_lengths["speech"])
    self.text_length = int(feature_lengths["text"])
    self.vocab_size = vocab_size
    self.seed = seed
    self.shard_index = shard_index
    self.batches_consumed = start_batch
    self.nan_at_batches = set(nan_at_batches)
    self.fixed_batch = fixed_batch

  def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
    return self

  def __next__(self) -> Dict[str, np.ndarray]:
    index = 0 if self.fixed_batch else self.batches_consumed
    rng = np.random.default_rng([self.seed, self.shard_index, index])
    batch = synthetic_batch(rng, self.batch_size, self.speech_frames, self.text_length,
                            self.vocab_size)
    if self.batches_consumed in self.nan_at_batches:
      batch[types.SPEECH_FEATURES][1, 0, 0] = np.nan  # Row 1 is a speech row.
    self.batches_consumed += 1
    return batch


@gin.configurable
def make_synthetic_data(*, batch_size: int, feature_lengths: Mapping[str, int], shard_info=None,
                        seed: int = 0, start_batch: int = 0, vocab_size: int = gin.REQUIRED,
                        nan_at_batches: tuple = (),
                        fixed_batch: bool = False) -> SyntheticIterator:
  """`train.make_data` for generated batches (see `slam_jax.train.train`).

  Args:
    vocab_size: token ids are drawn from [3, vocab_size - 1); bind to the model's vocabulary.
    nan_at_batches: batch indices whose features get a NaN (to exercise the NaN guard).
    fixed_batch: repeat batch 0 forever (memorisation checks).
  """
  index = shard_info.index if shard_info is not None else 0
  return SyntheticIterator(batch_size, feature_lengths, vocab_size, seed=seed, shard_index=index,
                           start_batch=start_batch, nan_at_batches=tuple(nan_at_batches),
                           fixed_batch=fixed_batch)
