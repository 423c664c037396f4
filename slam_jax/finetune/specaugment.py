"""SpecAugment-style masking of the inputs during fine-tuning (Park et al. 2019; wav2vec 2.0).

Time: spans of the feature encoder's frames are replaced by the encoder's learned
`mask_embedding` (the one pre-training learned), wav2vec 2.0's fine-tuning recipe
(`mask_prob` / `mask_length`), sampled with `slam_jax.masking.speech_span_mask`.
Frequency: `freq_masks` bands of up to `freq_width` log-mel bins are zeroed (the normalised mean).
"""

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from slam_jax import masking


@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
  """Attributes:
    time_start_prob: probability that a span starts at a frame (0 disables time masking);
      wav2vec 2.0 fine-tunes with 0.05 (its 0.65 "mask_prob" is spread over span length 10).
    time_span: span length in encoder frames (40 ms each).
    freq_masks: number of frequency bands zeroed per utterance (0 disables).
    freq_width: maximum band width in mel bins.
  """

  time_start_prob: float = 0.0
  time_span: int = 5
  freq_masks: int = 0
  freq_width: int = 8

  @property
  def enabled(self) -> bool:
    return self.time_start_prob > 0 or self.freq_masks > 0


def time_mask(key: jax.Array, valid: jnp.ndarray,
              config: SpecAugmentConfig) -> Optional[jnp.ndarray]:
  """bool [B, T'] frames to replace by the mask embedding (None when time masking is off)."""
  if config.time_start_prob <= 0:
    return None
  return masking.speech_span_mask(
      key, valid, masking.SpeechMaskConfig(start_prob=config.time_start_prob,
                                           span_length=config.time_span))


def freq_mask(key: jax.Array, features: jnp.ndarray, config: SpecAugmentConfig) -> jnp.ndarray:
  """Zeroes `freq_masks` random bands of [0, freq_width) bins of features [B, T, F]."""
  if config.freq_masks <= 0:
    return features
  batch, _, bins = features.shape
  width_key, start_key = jax.random.split(key)
  shape = (batch, config.freq_masks)
  widths = jax.random.randint(width_key, shape, 0, config.freq_width + 1)
  starts = jax.random.randint(start_key, shape, 0, bins) % jnp.maximum(bins - widths + 1, 1)
  b = jnp.arange(bins)[None, None, :]
  hit = (b >= starts[..., None]) & (b < (starts + widths)[..., None])  # [B, masks, F]
  keep = ~jnp.any(hit, axis=1)
  return features * keep[:, None, :].astype(features.dtype)
