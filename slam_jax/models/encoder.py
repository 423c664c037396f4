"""SlamEncoder: feature encoder -> speech-only Conformer stack -> shared [speech; text] stack.

    speech_features [B,T,80] --FeatureEncoder--> features [B,T',D]   (quantizer input, unmasked)
        --(span mask: learned mask_embedding)--> input_projection --> speech_stack --> speech_hidden
    text_tokens [B,L] --TextEmbedder--> [B,L,D]
    [speech_hidden + modality[0]; text + modality[1]] --shared_stack--> shared_speech, shared_text

SLAM (Bapna et al. 2021, arXiv 2110.10329) = w2v-BERT's speech encoder (Chung et al. 2021, arXiv
2108.06209: feature encoder + "contrastive module" Conformer layers) + a text embedder + a deep
shared ("multimodal") Conformer stack that takes speech, text or a [speech; text] concatenation.

Position ids in the shared stack are concat(0..T'-1, speech_length + text_positions) and segment
ids concat(speech_valid, text_segment_ids): a paired row's transcript (segment 1) attends to its
speech, packed text rows keep separate segments, and relative distances do not depend on padding.
The depthwise convolutions never cross the speech/text boundary nor a packed-segment boundary.

All outputs are in the compute dtype (`EncoderConfig.dtype`) and are zero at invalid positions.
Dropout uses the rng stream 'dropout'; params are fp32.
"""

from typing import Optional

import flax.linen as nn
import flax.struct
import jax.numpy as jnp

from slam_jax.models import config as config_lib
from slam_jax.models import conformer as conformer_lib
from slam_jax.models import layers as layers_lib
from slam_jax.models import speech as speech_lib
from slam_jax.models import text as text_lib

# The configuration lives in config.py; these names stay importable from here.
EncoderConfig = config_lib.EncoderConfig
PRESETS = config_lib.PRESETS
get_preset = config_lib.get_preset
make_encoder_config = config_lib.make_encoder_config


@flax.struct.dataclass
class EncoderOutputs:
  """What SlamEncoder returns (arrays in the compute dtype unless noted; zero where invalid).

  Attributes:
    features: [B, T', D] feature-encoder output before span masking (quantizer input / contrastive
      target source).
    speech_valid: bool [B, T'] valid subsampled frames.
    speech_lengths: int32 [B] number of valid subsampled frames.
    speech_hidden: [B, T', D] speech-only stack output (contrastive context vectors).
    shared_speech: [B, T', D] shared stack output at the speech positions.
    shared_text: [B, L, D] shared stack output at the text positions.
    text_valid: bool [B, L] (text_segment_ids > 0).
  """
  features: jnp.ndarray
  speech_valid: jnp.ndarray
  speech_lengths: jnp.ndarray
  speech_hidden: jnp.ndarray
  shared_speech: jnp.ndarray
  shared_text: jnp.ndarray
  text_valid: jnp.ndarray


class SlamEncoder(nn.Module):
  """The SLAM encoder. Param tree: feature_encoder, input_projection (absent when
  `config.input_projection` is False), speech_stack, text_embedder, shared_stack, mask_embedding
  [D], modality_embedding [2, D] (stable names: checkpoint format).

  Attributes:
    config: EncoderConfig.
  """
  config: EncoderConfig

  def setup(self):
    cfg = self.config
    dtype = cfg.compute_dtype
    d = cfg.model_dim
    if cfg.front_end == "stacked":
      self.feature_encoder = speech_lib.StackedFrames(d, cfg.stack_frames,
                                                      cfg.layer_norm_epsilon, dtype)
    else:
      self.feature_encoder = speech_lib.FeatureEncoder(d, cfg.subsampling_channels, dtype)
    if cfg.input_projection:
      self.input_projection = layers_lib.dense(d, ("embed", "mlp"), dtype=dtype)
    self.speech_stack = conformer_lib.ConformerStack(cfg, cfg.num_speech_layers)
    self.text_embedder = text_lib.TextEmbedder(cfg.vocab_size, d, cfg.dropout_rate, dtype)
    self.shared_stack = conformer_lib.ConformerStack(cfg, cfg.num_shared_layers)
    self.mask_embedding = self.param(
        "mask_embedding", layers_lib.partitioned(nn.initializers.uniform(1.0), ("embed",)),
        (d,), jnp.float32)
    self.modality_embedding = self.param(
        "modality_embedding",
        layers_lib.partitioned(nn.initializers.normal(stddev=0.02), (None, "embed")),
        (2, d), jnp.float32)
    self.feature_dropout = nn.Dropout(cfg.dropout_rate)

  @staticmethod
  def subsampled_mask(config: EncoderConfig, speech_mask: jnp.ndarray) -> jnp.ndarray:
    """bool [B, T'] valid frames after the feature encoder (to sample span masks on)."""
    if config.front_end == "stacked":
      return speech_lib.stacked_mask(speech_mask, config.stack_frames)
    return speech_lib.subsampled_mask(speech_mask)

  def __call__(self, speech_features: jnp.ndarray, speech_mask: jnp.ndarray,
               text_tokens: jnp.ndarray, text_segment_ids: jnp.ndarray,
               text_positions: jnp.ndarray, *, speech_span_mask: Optional[jnp.ndarray] = None,
               deterministic: bool = True) -> EncoderOutputs:
    """Encodes a batch whose rows are text, speech or [speech; text] pairs (see slam_jax.types).

    Args:
      speech_features: float [B, T, num_mel_bins] normalised log-mel frames.
      speech_mask: int [B, T]; 1 = real frame (a prefix), 0 = padding (all 0 for text rows).
      text_tokens: int [B, L].
      text_segment_ids: int [B, L]; 0 = padding (all 0 for speech rows), 1.. = packed example.
      text_positions: int [B, L]; position within its own segment.
      speech_span_mask: optional bool [B, T'] frames to replace by the learned mask embedding
        before the speech stack (only valid frames are replaced).
      deterministic: disables dropout; pass False with rngs={'dropout': key} to train.

    Returns:
      EncoderOutputs.
    """
    cfg = self.config
    dtype = cfg.compute_dtype
    if speech_features.shape[-1] != cfg.num_mel_bins:
      raise ValueError(f"speech_features has {speech_features.shape[-1]} mel bins per frame; "
                       f"EncoderConfig.num_mel_bins is {cfg.num_mel_bins}")
    batch, frames = speech_mask.shape
    features, speech_valid = self.feature_encoder(speech_features, speech_mask)
    t_sub = features.shape[1]
    speech_lengths = jnp.sum(speech_valid.astype(jnp.int32), axis=-1)

    x = features
    if speech_span_mask is not None:
      if speech_span_mask.shape != speech_valid.shape:
        raise ValueError(f"speech_span_mask has shape {speech_span_mask.shape}; expected "
                         f"{speech_valid.shape} = SlamEncoder.subsampled_mask(config, speech_mask)"
                         f" for speech_mask of shape {(batch, frames)}")
      replace = (speech_span_mask.astype(bool) & speech_valid)[..., None]
      x = jnp.where(replace, self.mask_embedding.astype(dtype)[None, None, :], x)
    if cfg.input_projection:
      x = self.input_projection(x)
    x = self.feature_dropout(x, deterministic=deterministic)
    # Stack inputs for layer-wise readout (slam_jax.inference); a no-op unless 'intermediates'
    # is mutable.
    self.sow("intermediates", "speech_stack_input", x)
    speech_segments = speech_valid.astype(jnp.int32)
    speech_positions = jnp.broadcast_to(jnp.arange(t_sub, dtype=jnp.int32)[None, :],
                                        (batch, t_sub))
    speech_hidden = self.speech_stack(x, speech_segments, speech_positions,
                                      deterministic=deterministic)

    text_segment_ids = text_segment_ids.astype(jnp.int32)
    text_valid = text_segment_ids > 0
    text_x = self.text_embedder(text_tokens, text_positions, text_segment_ids,
                                deterministic=deterministic)

    modality = self.modality_embedding.astype(dtype)
    joint = jnp.concatenate([speech_hidden + modality[0][None, None, :],
                             text_x + modality[1][None, None, :]], axis=1)
    self.sow("intermediates", "shared_stack_input", joint)
    segments = jnp.concatenate([speech_segments, text_segment_ids], axis=1)
    positions = jnp.concatenate(
        [speech_positions, speech_lengths[:, None] + text_positions.astype(jnp.int32)], axis=1)
    # The depthwise conv must not cross from speech into text: shift text segment ids past 1.
    conv_segments = jnp.concatenate(
        [speech_segments, jnp.where(text_valid, text_segment_ids + 1, 0)], axis=1)
    shared = self.shared_stack(joint, segments, positions, conv_segment_ids=conv_segments,
                               deterministic=deterministic)
    return EncoderOutputs(
        features=features,
        speech_valid=speech_valid,
        speech_lengths=speech_lengths,
        speech_hidden=speech_hidden,
        shared_speech=shared[:, :t_sub],
        shared_text=shared[:, t_sub:],
        text_valid=text_valid)

  def attend_text(self, x: jnp.ndarray) -> jnp.ndarray:
    """Tied text output projection: fp32 logits [..., vocab_size] = x @ text embedding^T."""
    return self.text_embedder.attend(x)

  def embed_text(self, text_tokens, text_positions, text_segment_ids, deterministic=True):
    """The text embedder alone: [B, L, D] (for heads that need input embeddings)."""
    return self.text_embedder(text_tokens, text_positions, text_segment_ids,
                              deterministic=deterministic)
