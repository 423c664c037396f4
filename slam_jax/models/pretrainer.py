"""SlamPretrainer: the encoder plus the quantizer and the objective heads, in one flax module.

It returns the encoder outputs and every named intermediate the objectives read; it knows nothing of
losses, masks' sampling or example kinds (`slam_jax.model.SlamModel` wires those).

Param tree (stable names, the checkpoint format): encoder (see SlamEncoder), quantizer,
contrastive_projection, speech_mlm_head, text_mlm_head, stm_head.
"""

from typing import Optional

import flax.linen as nn
import flax.struct
import jax.numpy as jnp

from slam_jax.models import encoder as encoder_lib
from slam_jax.models import heads as heads_lib
from slam_jax.models import quantizer as quantizer_lib


@flax.struct.dataclass
class PretrainerOutputs:
  """Attributes:
    encoder: `EncoderOutputs`.
    quantizer: `QuantizerOutputs` of the (unmasked) feature-encoder frames.
    context: float32 [B, T', code_dim] projected speech-only stack outputs.
    speech_logits: float32 [B, T', G, V] code-id logits from the shared stack.
    text_logits: float32 [B, L, vocab] token logits from the shared stack.
    stm_logits: float32 [B] speech-text match logits.
  """

  encoder: encoder_lib.EncoderOutputs
  quantizer: quantizer_lib.QuantizerOutputs
  context: jnp.ndarray
  speech_logits: jnp.ndarray
  text_logits: jnp.ndarray
  stm_logits: jnp.ndarray


class SlamPretrainer(nn.Module):
  """Attributes:
    encoder_config: the encoder architecture.
    quantizer_config: codebooks and Gumbel temperature schedule.
    tie_text_embedding: the text MLM head reuses the token embedding (BERT); False = own matrix.
  """

  encoder_config: encoder_lib.EncoderConfig
  quantizer_config: quantizer_lib.QuantizerConfig
  tie_text_embedding: bool = True

  def setup(self):
    dtype = self.encoder_config.compute_dtype
    q = self.quantizer_config
    self.encoder = encoder_lib.SlamEncoder(self.encoder_config)
    self.quantizer = quantizer_lib.GumbelQuantizer(q, dtype)
    self.contrastive_projection = heads_lib.ContrastiveProjection(q.code_dim, dtype)
    self.speech_mlm_head = heads_lib.SpeechMlmHead(q.num_groups, q.num_entries, dtype)
    self.text_mlm_head = heads_lib.TextMlmHead(self.encoder_config.vocab_size, dtype)
    self.stm_head = heads_lib.StmHead(dtype)

  def __call__(self, speech_features: jnp.ndarray, speech_mask: jnp.ndarray,
               text_tokens: jnp.ndarray, text_segment_ids: jnp.ndarray,
               text_positions: jnp.ndarray, *, speech_span_mask: Optional[jnp.ndarray] = None,
               step=0, deterministic: bool = True,
               gumbel_keys: Optional[jnp.ndarray] = None) -> PretrainerOutputs:
    """Runs the encoder and every head on a batch (arguments as `SlamEncoder.__call__`).

    Args:
      speech_features, speech_mask, text_tokens, text_segment_ids, text_positions: model inputs
        (text already masked by the caller).
      speech_span_mask: bool [B, T'] frames replaced by the mask embedding before the speech stack.
      step: training step, for the Gumbel temperature.
      deterministic: no dropout, no Gumbel noise. Training needs rngs 'dropout' and 'gumbel'
        (or `gumbel_keys`).
      gumbel_keys: optional uint32 [B, key] per-row Gumbel keys (see `GumbelQuantizer`).
    """
    enc = self.encoder(speech_features, speech_mask, text_tokens, text_segment_ids,
                       text_positions, speech_span_mask=speech_span_mask,
                       deterministic=deterministic)
    quant = self.quantizer(enc.features, enc.speech_valid, step=step, deterministic=deterministic,
                           noise_keys=gumbel_keys)
    attend = self.encoder.attend_text if self.tie_text_embedding else None
    return PretrainerOutputs(
        encoder=enc,
        quantizer=quant,
        context=self.contrastive_projection(enc.speech_hidden),
        speech_logits=self.speech_mlm_head(enc.shared_speech),
        text_logits=self.text_mlm_head(enc.shared_text, attend),
        stm_logits=self.stm_head(enc.shared_speech, enc.speech_valid, enc.shared_text,
                                 enc.text_valid))

  def match_logits(self, speech_features, speech_mask, text_tokens, text_segment_ids,
                   text_positions, deterministic: bool = True) -> jnp.ndarray:
    """float32 [B] STM logits of an unmasked pass (ALBEF's image-text matching pass)."""
    enc = self.encoder(speech_features, speech_mask, text_tokens, text_segment_ids,
                       text_positions, deterministic=deterministic)
    return self.stm_head(enc.shared_speech, enc.speech_valid, enc.shared_text, enc.text_valid)

  def encode(self, speech_features, speech_mask, text_tokens, text_segment_ids, text_positions,
             deterministic: bool = True) -> encoder_lib.EncoderOutputs:
    """The encoder alone, no masking (for downstream use)."""
    return self.encoder(speech_features, speech_mask, text_tokens, text_segment_ids,
                        text_positions, deterministic=deterministic)
