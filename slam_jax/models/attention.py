"""Multi-head self-attention with relative positions computed from explicit position ids.

Transformer-XL style (Dai et al., 2019; used by Conformer): logits = content + position terms,

  logit[h, i, j] = ((q_i + u_h) . k_j + (q_i + v_h) . r[clip(p_i - p_j)]) / sqrt(head_dim)

where r[d] is a linear projection of a sinusoidal embedding of the relative distance d, clipped to
[-M, M] (M = `max_relative_distance`). The position term is computed against the (2M+1)-entry table
and gathered by `clip(p_i - p_j) + M`. Distances come from position *ids*, not array indices, so the
output at a valid position does not change when the sequence is padded or when the speech part of a
[speech; text] row is padded (the text's ids start at the speech length).

When the position ids are the array indices (`positions=None`: the speech-only stack, the encoder
benchmark), the same values are read without a gather: the (2M+1)-column table of q.r products is
widened to the 2T-1 distances (edge columns repeated, as the clip does) and skewed into [q, k] by
the Transformer-XL reshape (`relative_shift`). A gather over [b, h, q, k] and, worse, its backward
scatter-add are slow on CPU and GPU alike; the skew is two slices and a reshape.

Masking: token i attends to j iff both have the same segment id and both ids are > 0. Fully masked
rows (padding; the empty side of a text-only or speech-only row) output zeros, never NaN.
Logits and softmax are fp32 whatever the compute dtype.
"""

from typing import Optional, Tuple

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


def relative_index(positions: Optional[jnp.ndarray], max_distance: int) -> Optional[jnp.ndarray]:
  """int32 [batch, q, k]: clip(pos_q - pos_k, -M, M) + M, an index into the 2M+1 table.

  None when `positions` is None (ids = array indices: attention uses `relative_shift` instead).
  """
  if positions is None:
    return None
  rel = positions[:, :, None].astype(jnp.int32) - positions[:, None, :].astype(jnp.int32)
  return jnp.clip(rel, -max_distance, max_distance) + max_distance


def attention_inputs(segment_ids: jnp.ndarray, positions: Optional[jnp.ndarray],
                     max_distance: int) -> Tuple[jnp.ndarray, Optional[jnp.ndarray]]:
  """(mask [b,1,q,k] bool, relative index [b,q,k] int32 or None), computed once per stack.

  `positions=None` means the position ids are the array indices 0..T-1 (no gather needed).
  """
  return attention_mask(segment_ids), relative_index(positions, max_distance)


def relative_shift(table_logits: jnp.ndarray, length: int) -> jnp.ndarray:
  """Position logits [..., q, k] = table_logits[..., q, clip(q - k, -M, M) + M] without a gather.

  Args:
    table_logits: [..., T, 2M+1]; column c holds the logit of relative distance c - M.
    length: T (queries = keys = array positions 0..T-1).

  Returns:
    [..., T, T].
  """
  t = length
  m = (table_logits.shape[-1] - 1) // 2
  # Columns by descending distance T-1 .. -(T-1) (2T-1 of them), then one spare column so that
  # row i's window (distance i - j for j = 0..T-1 starts at column T-1-i) is a strided slice.
  desc = table_logits[..., ::-1]  # column c: distance m - c
  if m >= t - 1:
    full = desc[..., m - (t - 1):m + t]
  else:
    edge = t - 1 - m
    lead = table_logits.shape[:-1]
    full = jnp.concatenate([jnp.broadcast_to(desc[..., :1], lead + (edge,)), desc,
                            jnp.broadcast_to(desc[..., -1:], lead + (edge,))], axis=-1)
  full = jnp.pad(full, [(0, 0)] * (full.ndim - 1) + [(0, 1)])  # [..., T, 2T]
  lead = full.shape[:-2]
  flat = full.reshape(lead + (2 * t * t,))
  # full[i, T-1-i+j] sits at flat index (T-1) + i*(2T-1) + j.
  window = flat[..., t - 1:t - 1 + t * (2 * t - 1)].reshape(lead + (t, 2 * t - 1))
  return window[..., :t]


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
      rel_index: int32 [batch, length, length] from `relative_index`, or None when the position
        ids are the array indices (gather-free `relative_shift`).
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
    if rel_index is None:
      position = relative_shift(pos_table, x.shape[1])  # [b,h,q,k]
    else:
      position = jnp.take_along_axis(pos_table, rel_index[:, None, :, :], axis=-1)  # [b,h,q,k]
    logits = content + position
    logits = jnp.where(mask, logits, _NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1)
    # Fully masked rows -> 0 instead of uniform. Elsewhere masked entries are already exactly 0
    # (exp(-1e30 - max)), so one [b,1,q,1] factor replaces a select over [b,h,q,k].
    row_valid = jnp.any(mask, axis=-1, keepdims=True)
    probs = probs * row_valid.astype(probs.dtype)
    if self.dropout_rate > 0.0 and not deterministic:
      keep = 1.0 - self.dropout_rate
      drop = jax.random.bernoulli(self.make_rng("dropout"), keep, probs.shape)
      probs = jnp.where(drop, probs / keep, 0.0)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
    return layers_lib.dense(embed, ("heads", "kv", "embed"), dtype=self.dtype, axis=(-2, -1),
                            name="out")(out)
