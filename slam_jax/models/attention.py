"""Multi-head self-attention with relative positions computed from explicit position ids.

Transformer-XL style (Dai et al., 2019; used by Conformer): logits = content + position terms,

  logit[h, i, j] = ((q_i + u_h) . k_j + (q_i + v_h) . r[clip(p_i - p_j)]) / sqrt(head_dim)

where r[d] is a linear projection of a sinusoidal embedding of the relative distance d, clipped to
[-M, M] (M = `max_relative_distance`). The position term is computed against the (2M+1)-entry table
and gathered by `clip(p_i - p_j) + M`. Distances come from position *ids*, not array indices, so the
output at a valid position does not change when the sequence is padded or when the speech part of a
[speech; text] row is padded (the text's ids start at the speech length).

Masking: token i attends to j iff both have the same segment id and both ids are > 0. Fully masked
rows (padding; the empty side of a text-only or speech-only row) output zeros, never NaN.
Logits and softmax are fp32 whatever the compute dtype.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from slam_jax.models import layers as layers_lib

_NEG_INF = -1e30


def attention_mask(segment_ids: jnp.ndarray) -> jnp.ndarray:
  """bool [batch, 1, q, k]: same segment id and both > 0."""
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  valid = (segment_ids[:, :, None] > 0) & (segment_ids[:, None, :] > 0)
  return (same & valid)[:, None, :, :]


def relative_index(positions: jnp.ndarray, max_distance: int) -> jnp.ndarray:
  """int32 [batch, q, k]: clip(pos_q - pos_k, -M, M) + M, an index into the 2M+1 table."""
  rel = positions[:, :, None].astype(jnp.int32) - positions[:, None, :].astype(jnp.int32)
  return jnp.clip(rel, -max_distance, max_distance) + max_distance


def attention_inputs(segment_ids: jnp.ndarray, positions: jnp.ndarray,
                     max_distance: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(mask [b,1,q,k] bool, relative index [b,q,k] int32), computed once per stack."""
  return attention_mask(segment_ids), relative_index(positions, max_distance)


class RelativeSelfAttention(nn.Module):
  """Relative-position multi-head self-attention (Transformer-XL style, clipped distances).

  Attributes:
    num_heads: attention heads.
    head_dim: size of each head.
    max_relative_distance: M; distances are clipped to [-M, M].
    dropout_rate: dropout on the attention probabilities (rng stream 'dropout').
    dtype: compute dtype (params are fp32).
  """
  num_heads: int
  head_dim: int
  max_relative_distance: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, rel_index: jnp.ndarray,
               deterministic: bool = True) -> jnp.ndarray:
    """Self-attention.

    Args:
      x: [batch, length, embed].
      mask: bool [batch, 1, length, length] from `attention_mask`.
      rel_index: int32 [batch, length, length] from `relative_index`.
      deterministic: disables attention dropout.

    Returns:
      [batch, length, embed] in the compute dtype; zero at fully masked query positions.
    """
    embed = x.shape[-1]
    h, d, m = self.num_heads, self.head_dim, self.max_relative_distance
    x = x.astype(self.dtype)
    proj = lambda name: layers_lib.dense((h, d), ("embed", "heads", "kv"), dtype=self.dtype,
                                         name=name)
    q = proj("query")(x) * jnp.asarray(d ** -0.5, self.dtype)  # [b, q, h, d]
    k = proj("key")(x)
    v = proj("value")(x)
    u_bias = self.param("u_bias", layers_lib.partitioned(nn.initializers.zeros, ("heads", "kv")),
                        (h, d), jnp.float32)
    v_bias = self.param("v_bias", layers_lib.partitioned(nn.initializers.zeros, ("heads", "kv")),
                        (h, d), jnp.float32)
    scale = d ** -0.5
    # Relative embedding table for distances -M..M: sinusoid -> linear (no bias).
    table = layers_lib.sinusoidal_embedding(jnp.arange(-m, m + 1), embed).astype(self.dtype)
    r = layers_lib.dense((h, d), ("embed", "heads", "kv"), dtype=self.dtype, use_bias=False,
                         name="pos_proj")(table)  # [2m+1, h, d]

    qu = q + (u_bias * scale).astype(self.dtype)[None, None]
    qv = q + (v_bias * scale).astype(self.dtype)[None, None]
    content = jnp.einsum("bqhd,bkhd->bhqk", qu, k, preferred_element_type=jnp.float32)
    pos_table = jnp.einsum("bqhd,rhd->bhqr", qv, r, preferred_element_type=jnp.float32)
    position = jnp.take_along_axis(pos_table, rel_index[:, None, :, :], axis=-1)  # [b,h,q,k]
    logits = content + position
    logits = jnp.where(mask, logits, _NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1)
    probs = jnp.where(mask, probs, 0.0)  # fully masked rows -> 0 instead of uniform
    if self.dropout_rate > 0.0 and not deterministic:
      keep = 1.0 - self.dropout_rate
      drop = jax.random.bernoulli(self.make_rng("dropout"), keep, probs.shape)
      probs = jnp.where(drop, probs / keep, 0.0)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
    return layers_lib.dense(embed, ("heads", "kv", "embed"), dtype=self.dtype, axis=(-2, -1),
                            name="out")(out)
