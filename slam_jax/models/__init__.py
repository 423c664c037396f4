"""Encoder modules: configuration (config.py), feature encoder, Conformer stacks, text embedder, SlamEncoder.

Public API: `EncoderConfig`, `get_preset`, `PRESETS`, `make_encoder_config` (gin), `SlamEncoder`,
`EncoderOutputs`, `subsampled_lengths`, `subsampled_mask`.
"""

from slam_jax.models.config import EncoderConfig, PRESETS, get_preset, make_encoder_config
from slam_jax.models.encoder import EncoderOutputs, SlamEncoder
from slam_jax.models.speech import subsampled_lengths, subsampled_mask

__all__ = ["EncoderConfig", "EncoderOutputs", "PRESETS", "SlamEncoder", "get_preset",
           "make_encoder_config", "subsampled_lengths", "subsampled_mask"]
