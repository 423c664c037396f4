"""Multi-head self-attention with relative positions computed from explicit position ids.

Transformer-XL style (Dai et al., 2019; used by Conformer): logits = content + position terms,

  logit[h, i, j] = ((q_i + u_h) . k_j + (q_i + v_h) . r[clip(p_i - p_j)]) / sqrt(head_dim)

where r[d] is a linear projection of a sinusoidal embedding of the relative distance d, clipped to
[-M, M] (M = `max_relative_distance`). The position term is computed against the (2M+1)-entry table
and gathered by `clip(p_i - p_j) + M`. Distances come from position *ids*, not array indices, so the
output at a valid position does not change when the sequence is padded or when the speech part of a
[speech; text] row is padded (the text's ids start at the speech length).

`position_term='shaw'` (w2v-BERT 2.0, HF Wav2Vec2Bert's `relative_key`; Shaw et al. 2018) replaces
the position term by q_i . E[clip(p_j - p_i, -L, R) + L] with a learned distance table E shared by
the heads, no u/v biases (`shaw_index` gives the table index).

Masking: token i attends to j iff both have the same segment id and both ids are > 0. Fully masked
rows (padding; the empty side of a text-only or speech-only row) output zeros, never NaN.
Logits and softmax are fp32 whatever the compute dtype. Without attention dropout the core runs
through `attend`, whose hand-written VJP is ~2% of a CPU encoder step faster than autodiff's
(README, Benchmarks); with dropout it is plain autodiff.

`implementation='xla'|'cudnn'` hands the core to `jax.nn.dot_product_attention` instead, with the
position term as its additive bias ([b, h, q, k] in the compute dtype) and the segment mask as
its mask: 'cudnn' is cuDNN's fused (flash) attention on NVIDIA GPUs (bf16/fp16, head_dim a
multiple of 8, even lengths); 'xla' is JAX's reference of the same call and the CPU check of it.
Neither supports attention dropout.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from slam_jax.models import layers as layers_lib

_NEG_INF = -1e30

# RelativeSelfAttention.implementation: our core (`attend`), or jax.nn.dot_product_attention's.
IMPLEMENTATIONS = ("slam", "xla", "cudnn")


def attention_mask(segment_ids: jnp.ndarray) -> jnp.ndarray:
  """bool [batch, 1, q, k]: same segment id and both > 0."""
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  valid = (segment_ids[:, :, None] > 0) & (segment_ids[:, None, :] > 0)
  return (same & valid)[:, None, :, :]


def relative_index(positions: jnp.ndarray, max_distance: int) -> jnp.ndarray:
  """int32 [batch, q, k]: clip(pos_q - pos_k, -M, M) + M, an index into the 2M+1 table."""
  rel = positions[:, :, None].astype(jnp.int32) - positions[:, None, :].astype(jnp.int32)
  return jnp.clip(rel, -max_distance, max_distance) + max_distance


def shaw_index(positions: jnp.ndarray, left: int, right: int) -> jnp.ndarray:
  """int32 [batch, q, k]: clip(pos_k - pos_q, -left, right) + left, an index into the
  (left + right + 1)-entry distance table of the 'shaw' position term (HF Wav2Vec2Bert's
  `relative_key`: keys up to `left` frames before the query and `right` after)."""
  rel = positions[:, None, :].astype(jnp.int32) - positions[:, :, None].astype(jnp.int32)
  return jnp.clip(rel, -left, right) + left


def attention_inputs(segment_ids: jnp.ndarray, positions: jnp.ndarray,
                     max_distance: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(mask [b,1,q,k] bool, relative index [b,q,k] int32), computed once per stack."""
  return attention_mask(segment_ids), relative_index(positions, max_distance)


def _gather_distances(table: jnp.ndarray, rel_index: jnp.ndarray) -> jnp.ndarray:
  """[b, h, q, 2M+1] -> [b, h, q, k]: each (query, key) pair's entry at its clipped distance."""
  return jnp.take_along_axis(table, rel_index[:, None, :, :], axis=-1)


def position_logits(qv: jnp.ndarray, r: jnp.ndarray, rel_index: jnp.ndarray) -> jnp.ndarray:
  """fp32 [b, h, q, k] position term qv_i . r[clip(p_i - p_j) + M]: computed against the
  (2M+1)-entry table, then gathered (qv [b, q, h, d], r [2M+1, h, d], rel_index [b, q, k])."""
  pos_table = jnp.einsum("bqhd,rhd->bhqr", qv, r, preferred_element_type=jnp.float32)
  return _gather_distances(pos_table, rel_index)


def attention_probs(qu: jnp.ndarray, qv: jnp.ndarray, k: jnp.ndarray, r: jnp.ndarray,
                    rel_index: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """fp32 [b, h, q, k] softmax of content + position logits; 0 where masked (whole rows too).

  Args:
    qu, qv: [b, q, h, d] queries (scaled) plus the content / position biases.
    k: [b, k, h, d] keys.
    r: [2M+1, h, d] relative-position embeddings.
    rel_index: int32 [b, q, k] from `relative_index`.
    mask: bool [b, 1, q, k] from `attention_mask`.
  """
  content = jnp.einsum("bqhd,bkhd->bhqk", qu, k, preferred_element_type=jnp.float32)
  logits = jnp.where(mask, content + position_logits(qv, r, rel_index), _NEG_INF)
  top = jnp.max(logits, axis=-1, keepdims=True)
  e = jnp.exp(logits - top)  # exactly 0 at masked keys of a row with any valid key
  # A fully masked row has e == 1 everywhere; `any` turns its probabilities into zeros.
  row_valid = jnp.any(mask, axis=-1, keepdims=True)
  return e * (row_valid / jnp.sum(e, axis=-1, keepdims=True))


@jax.custom_vjp
def attend(qu: jnp.ndarray, qv: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, r: jnp.ndarray,
           rel_index: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """[b, q, h, d] attention output `probs @ v` (see `attention_probs` for the arguments).

  The hand-written VJP is the flash-attention one: dS = P * (dP - rowsum(dO * O)), a [b,q,h]
  reduction in place of autodiff's passes over the [b,h,q,k] softmax, and no gradient reaches
  masked logits because P is 0 there.
  """
  return _attend_fwd(qu, qv, k, v, r, rel_index, mask)[0]


def _attend_fwd(qu, qv, k, v, r, rel_index, mask):
  probs = attention_probs(qu, qv, k, r, rel_index, mask)
  out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
  return out, (probs, qu, qv, k, v, r, rel_index, out)


def _attend_bwd(residuals, d_out):
  probs, qu, qv, k, v, r, rel_index, out = residuals
  dtype = v.dtype
  dv = jnp.einsum("bhqk,bqhd->bkhd", probs.astype(dtype), d_out)
  d_probs = jnp.einsum("bqhd,bkhd->bhqk", d_out, v, preferred_element_type=jnp.float32)
  delta = jnp.einsum("bqhd,bqhd->bhq", d_out.astype(jnp.float32), out.astype(jnp.float32))
  d_logits = probs * (d_probs - delta[..., None])
  d_content = d_logits.astype(dtype)
  dqu = jnp.einsum("bhqk,bkhd->bqhd", d_content, k)
  dk = jnp.einsum("bhqk,bqhd->bkhd", d_content, qu)
  table_shape = d_logits.shape[:3] + (r.shape[0],)
  _, gather_vjp = jax.vjp(lambda t: _gather_distances(t, rel_index),
                          jnp.zeros(table_shape, jnp.float32))
  d_table = gather_vjp(d_logits)[0].astype(dtype)
  dqv = jnp.einsum("bhqr,rhd->bqhd", d_table, r)
  dr = jnp.einsum("bhqr,bqhd->rhd", d_table, qv)
  return dqu, dqv, dk, dv, dr, None, None


attend.defvjp(_attend_fwd, _attend_bwd)


def _dot_product_attention(qu, qv, k, v, r, rel_index, mask, implementation: str) -> jnp.ndarray:
  """`attend`'s result through jax.nn.dot_product_attention: [b, q, h, d], zero at fully masked
  queries (where the library's softmax would average every value instead)."""
  bias = position_logits(qv, r, rel_index).astype(qu.dtype)
  out = jax.nn.dot_product_attention(qu, k, v, bias=bias, mask=mask, scale=1.0,
                                     implementation=implementation)
  row_valid = jnp.any(mask[:, 0], axis=-1)  # [b, q]
  return jnp.where(row_valid[:, :, None, None], out, jnp.zeros((), out.dtype))


class RelativeSelfAttention(nn.Module):
  """Relative-position multi-head self-attention (Transformer-XL style, clipped distances).

  Attributes:
    num_heads: attention heads.
    head_dim: size of each head.
    max_relative_distance: M; distances are clipped to [-M, M].
    dropout_rate: dropout on the attention probabilities (rng stream 'dropout').
    dtype: compute dtype (params are fp32).
    implementation: one of IMPLEMENTATIONS (see the module docstring); 'xla' and 'cudnn' need
      dropout_rate == 0.
    position_term: 'transformer_xl' (above) or 'shaw': logit[h, i, j] = (q_i . k_j + q_i .
      E[clip(p_j - p_i, -L, R) + L]) / sqrt(head_dim) with E a learned [L+R+1, head_dim] table
      ('distance_embedding', shared by the heads; no u/v biases, no pos_proj), rel_index from
      `shaw_index` (Shaw et al. 2018; HF Wav2Vec2Bert's 'relative_key').
    shaw_distances: (L, R) of the 'shaw' term.
  """
  num_heads: int
  head_dim: int
  max_relative_distance: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  implementation: str = "slam"
  position_term: str = "transformer_xl"
  shaw_distances: Tuple[int, int] = (64, 8)

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
    if self.position_term == "shaw":
      left, right = self.shaw_distances
      table = self.param("distance_embedding",
                         layers_lib.partitioned(nn.initializers.normal(stddev=0.02),
                                                (None, "kv")),
                         (left + right + 1, d), jnp.float32)
      r = jnp.broadcast_to(table.astype(self.dtype)[:, None, :], (left + right + 1, h, d))
      qu = qv = q
    else:
      u_bias = self.param("u_bias",
                          layers_lib.partitioned(nn.initializers.zeros, ("heads", "kv")),
                          (h, d), jnp.float32)
      v_bias = self.param("v_bias",
                          layers_lib.partitioned(nn.initializers.zeros, ("heads", "kv")),
                          (h, d), jnp.float32)
      scale = d ** -0.5
      # Relative embedding table for distances -M..M: sinusoid -> linear (no bias).
      table = layers_lib.sinusoidal_embedding(jnp.arange(-m, m + 1), embed).astype(self.dtype)
      r = layers_lib.dense((h, d), ("embed", "heads", "kv"), dtype=self.dtype, use_bias=False,
                           name="pos_proj")(table)  # [2m+1, h, d]
      qu = q + (u_bias * scale).astype(self.dtype)[None, None]
      qv = q + (v_bias * scale).astype(self.dtype)[None, None]
    if self.implementation not in IMPLEMENTATIONS:
      raise ValueError(f"RelativeSelfAttention.implementation must be one of {IMPLEMENTATIONS}, "
                       f"got {self.implementation!r}")
    if self.implementation != "slam":
      if self.dropout_rate > 0.0:
        raise ValueError(f"implementation={self.implementation!r} (jax.nn.dot_product_attention) "
                         f"has no attention dropout; set the dropout rate to 0 or use 'slam'")
      if self.implementation == "cudnn" and (jax.default_backend() != "gpu"
                                             or jnp.dtype(self.dtype) == jnp.float32):
        raise ValueError(
            f"attention_implementation='cudnn' is cuDNN's fused attention: it needs an NVIDIA "
            f"GPU (backend here: {jax.default_backend()!r}) and bf16 compute (dtype here: "
            f"{jnp.dtype(self.dtype).name}); use 'slam' (any backend) or set dtype='bfloat16'")
      out = _dot_product_attention(qu, qv, k, v, r, rel_index, mask, self.implementation)
    elif self.dropout_rate > 0.0 and not deterministic:
      probs = attention_probs(qu, qv, k, r, rel_index, mask)
      keep = 1.0 - self.dropout_rate
      drop = jax.random.bernoulli(self.make_rng("dropout"), keep, probs.shape)
      probs = jnp.where(drop, probs / keep, 0.0)
      out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
    else:
      out = attend(qu, qv, k, v, r, rel_index, mask)
    return layers_lib.dense(embed, ("heads", "kv", "embed"), dtype=self.dtype, axis=(-2, -1),
                            name="out")(out)
