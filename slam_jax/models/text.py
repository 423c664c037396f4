"""Text embedder (SLAM, Bapna et al. 2021): token embedding + sinusoidal positions + LayerNorm.

The embedding table (`embedding`, logical axes ('vocab', 'embed')) can be tied to an MLM output
head through `TextEmbedder.attend` (or `SlamEncoder.attend_text`).
"""

import flax.linen as nn
import jax.numpy as jnp

from slam_jax.models import layers as layers_lib


class TextEmbedder(nn.Module):
  """Token embedding + sinusoidal(text_positions) -> LayerNorm -> dropout.

  Attributes:
    vocab_size: V.
    model_dim: D (even).
    dropout_rate: dropout after the layer norm (rng stream 'dropout').
    dtype: compute dtype.
  """
  vocab_size: int
  model_dim: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    # N(0, 1) entries, the same scale as the sinusoids they are added to (T5 initialises so too).
    self.embedding = self.param(
        "embedding", layers_lib.partitioned(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        (self.vocab_size, self.model_dim), jnp.float32)
    self.norm = layers_lib.layer_norm(self.dtype, name="norm")
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, tokens: jnp.ndarray, positions: jnp.ndarray, segment_ids: jnp.ndarray,
               deterministic: bool = True) -> jnp.ndarray:
    """Embeds tokens.

    Args:
      tokens: int [batch, L].
      positions: int [batch, L], position within its own packed segment.
      segment_ids: int [batch, L]; 0 = padding.
      deterministic: disables dropout.

    Returns:
      [batch, L, model_dim] in the compute dtype, zero at padding.
    """
    x = jnp.take(self.embedding, tokens, axis=0).astype(jnp.float32)
    x = x + layers_lib.sinusoidal_embedding(positions, self.model_dim)
    x = self.norm(x.astype(self.dtype))
    x = self.dropout(x, deterministic=deterministic)
    x = jnp.where((segment_ids > 0)[..., None], x, jnp.zeros((), x.dtype))
    return layers_lib.constrain(x)

  def attend(self, x: jnp.ndarray) -> jnp.ndarray:
    """Tied output projection: logits [..., V] = x @ embedding^T (fp32 accumulation)."""
    return jnp.einsum("...d,vd->...v", x.astype(self.dtype), self.embedding.astype(self.dtype),
                      preferred_element_type=jnp.float32)
