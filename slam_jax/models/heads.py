"""Output heads of SLAM's pre-training objectives (stable module names: checkpoint format).

  ContrastiveProjection  speech-only stack output -> code_dim (compared with quantized vectors)
  SpeechMlmHead          shared stack at speech positions -> G x V code logits
  TextMlmHead            shared stack at text positions -> vocabulary logits (BERT's transform:
                         dense + GELU + LayerNorm, then the tied token embedding, scaled by
                         D^-1/2 as in T5, or its own matrix)
  StmHead                masked mean over a row's valid speech and text positions -> dense + tanh
                         -> 1 match logit (there is no [CLS] position in SLAM's concatenation)
"""

from typing import Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from slam_jax.models import layers as layers_lib


class ContrastiveProjection(nn.Module):
  """Linear map of context vectors to the quantized-vector space."""

  code_dim: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, speech_hidden: jnp.ndarray) -> jnp.ndarray:
    """[B, T, D] -> float32 [B, T, code_dim]."""
    y = layers_lib.dense(self.code_dim, ("embed", "mlp"), dtype=self.dtype,
                         name="projection")(speech_hidden)
    return y.astype(jnp.float32)


class SpeechMlmHead(nn.Module):
  """Per-group code-id logits at every speech position."""

  num_groups: int
  num_entries: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, shared_speech: jnp.ndarray) -> jnp.ndarray:
    """[B, T, D] -> float32 [B, T, G, V]."""
    y = layers_lib.dense((self.num_groups, self.num_entries), ("embed", "codebook", None),
                         dtype=self.dtype, name="logits")(shared_speech)
    return y.astype(jnp.float32)


class TextMlmHead(nn.Module):
  """BERT-style MLM head; tied to the input embedding when `attend` is given."""

  vocab_size: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, shared_text: jnp.ndarray,
               attend: Optional[Callable[[jnp.ndarray], jnp.ndarray]] = None) -> jnp.ndarray:
    """[B, L, D] -> float32 [B, L, vocab_size].

    Args:
      shared_text: shared-stack outputs at the text positions.
      attend: tied output projection (the encoder's `attend_text`); None = untied (own kernel).
    """
    d = shared_text.shape[-1]
    h = layers_lib.dense(d, ("embed", "mlp"), dtype=self.dtype, name="transform")(shared_text)
    h = nn.gelu(h)
    h = layers_lib.layer_norm(self.dtype, name="norm")(h)
    if attend is None:
      logits = layers_lib.dense(self.vocab_size, ("embed", "vocab"), dtype=self.dtype,
                                use_bias=False, name="output")(h)
    else:
      # As T5 does when tying: scale by D^-1/2 so that unit-variance features against the N(0, 1)
      # embedding rows give O(1) logits at initialisation.
      logits = attend(h * (d ** -0.5))
    bias = self.param("bias", layers_lib.partitioned(nn.initializers.zeros, ("vocab",)),
                      (self.vocab_size,), jnp.float32)
    return logits.astype(jnp.float32) + bias[None, None, :]


class StmHead(nn.Module):
  """Speech-text match logit from a masked mean over the row's speech and text positions."""

  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, shared_speech: jnp.ndarray, speech_valid: jnp.ndarray,
               shared_text: jnp.ndarray, text_valid: jnp.ndarray) -> jnp.ndarray:
    """Returns float32 [B] logits (rows without any valid position pool to zeros)."""
    x = jnp.concatenate([shared_speech, shared_text], axis=1).astype(jnp.float32)
    w = jnp.concatenate([speech_valid, text_valid], axis=1).astype(jnp.float32)
    pooled = jnp.einsum("btd,bt->bd", x, w) / jnp.maximum(jnp.sum(w, axis=1), 1.0)[:, None]
    d = pooled.shape[-1]
    h = jnp.tanh(layers_lib.dense(d, ("embed", "mlp"), dtype=self.dtype, name="pooler")(pooled))
    logit = layers_lib.dense(1, ("mlp", None), dtype=self.dtype, name="logit")(h)
    return logit[:, 0].astype(jnp.float32)
