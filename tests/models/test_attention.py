"""Relative-position self-attention against a straightforward numpy reference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.models import attention as attention_lib
from slam_jax.models import layers as layers_lib

B, T, D, H, M = 2, 7, 8, 2, 3


def _inputs():
  rng = np.random.RandomState(0)
  x = rng.randn(B, T, D).astype(np.float32)
  # Row 0: two packed segments + padding, positions restart per segment.
  # Row 1: one segment whose position ids are not array indices (a gap of 4, as after padding).
  seg = np.array([[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1]], np.int32)
  pos = np.array([[0, 1, 2, 0, 1, 0, 0], [0, 1, 2, 7, 8, 9, 10]], np.int32)
  return x, seg, pos


def _numpy_reference(params, x, seg, pos):
  p = jax.tree_util.tree_map(np.asarray, nn.unbox(params))
  hd = D // H
  q = np.einsum("btd,dhk->bthk", x, p["query"]["kernel"]) + p["query"]["bias"]
  k = np.einsum("btd,dhk->bthk", x, p["key"]["kernel"]) + p["key"]["bias"]
  v = np.einsum("btd,dhk->bthk", x, p["value"]["kernel"]) + p["value"]["bias"]
  # Sinusoid of each relative distance, same frequencies as layers.sinusoidal_embedding.
  half = D // 2
  inv_freq = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
  out = np.zeros((B, T, H, hd), np.float64)
  for b in range(B):
    for h in range(H):
      for i in range(T):
        logits = np.full(T, -np.inf)
        for j in range(T):
          if seg[b, i] == 0 or seg[b, i] != seg[b, j]:
            continue
          dist = np.clip(pos[b, i] - pos[b, j], -M, M)
          emb = np.concatenate([np.sin(dist * inv_freq), np.cos(dist * inv_freq)])
          r = np.einsum("d,dk->k", emb, p["pos_proj"]["kernel"][:, h, :])
          content = (q[b, i, h] + p["u_bias"][h]) @ k[b, j, h]
          position = (q[b, i, h] + p["v_bias"][h]) @ r
          logits[j] = (content + position) / np.sqrt(hd)
        if np.all(np.isinf(logits)):
          continue  # fully masked query: zero output
        w = np.exp(logits - logits.max())
        w /= w.sum()
        out[b, i, h] = w @ v[b, :, h]
  return np.einsum("bthk,hkd->btd", out, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.fixture(scope="module")
def module_and_params():
  x, seg, pos = _inputs()
  module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                               max_relative_distance=M)
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  params = module.init(jax.random.PRNGKey(0), x, mask, rel)["params"]
  # Non-zero u/v biases so both terms are exercised.
  rng = np.random.RandomState(1)
  params = nn.unbox(params)
  params["u_bias"] = jnp.asarray(rng.randn(H, D // H), jnp.float32)
  params["v_bias"] = jnp.asarray(rng.randn(H, D // H), jnp.float32)
  return module, params


def test_matches_numpy_reference(module_and_params):
  module, params = module_and_params
  x, seg, pos = _inputs()
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  got = module.apply({"params": params}, x, mask, rel)
  want = _numpy_reference(params, x, seg, pos)
  # Padding queries (segment 0) give zeros through the out projection: only the bias remains.
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_fully_masked_rows_are_finite_and_bias_only(module_and_params):
  module, params = module_and_params
  x, _, pos = _inputs()
  seg = np.zeros((B, T), np.int32)  # nothing valid at all
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  got = np.asarray(module.apply({"params": params}, x, mask, rel))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, np.broadcast_to(np.asarray(params["out"]["bias"]), got.shape),
                             atol=1e-6)


def test_bfloat16_compute_keeps_fp32_logits(module_and_params):
  _, params = module_and_params
  x, seg, pos = _inputs()
  module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                               max_relative_distance=M, dtype=jnp.bfloat16)
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  got = module.apply({"params": params}, x, mask, rel)
  assert got.dtype == jnp.bfloat16
  want = _numpy_reference(params, x, seg, pos)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0.1, atol=0.1)


def test_relative_index_clips_and_uses_position_ids():
  pos = jnp.asarray([[0, 1, 2, 10]], jnp.int32)
  rel = np.asarray(attention_lib.relative_index(pos, 3))
  assert rel.shape == (1, 4, 4)
  assert rel[0, 3, 0] == 3 + 3  # distance 10 clipped to 3
  assert rel[0, 0, 3] == 0  # distance -10 clipped to -3
  assert rel[0, 1, 2] == -1 + 3


def test_sinusoidal_embedding_shape_and_values():
  emb = np.asarray(layers_lib.sinusoidal_embedding(jnp.asarray([[0, 5]]), 6))
  assert emb.shape == (1, 2, 6)
  np.testing.assert_allclose(emb[0, 0], [0, 0, 0, 1, 1, 1], atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_attend_vjp_matches_autodiff(dtype):
  """The hand-written (flash-style) VJP of `attend` vs autodiff of the same forward, on packed
  segments, padding (fully masked rows) and position ids with a gap."""
  _, seg, pos = _inputs()
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  rng = np.random.RandomState(2)
  hd = D // H
  qu, qv, k, v = (jnp.asarray(rng.randn(B, T, H, hd), dtype) for _ in range(4))
  r = jnp.asarray(rng.randn(2 * M + 1, H, hd), dtype)
  weights = jnp.asarray(rng.randn(B, T, H, hd), jnp.float32)

  def autodiff_attend(qu, qv, k, v, r):
    probs = attention_lib.attention_probs(qu, qv, k, r, rel, mask)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(dtype), v)

  def loss(fn):
    return lambda *args: jnp.sum(fn(*args).astype(jnp.float32) * weights)

  args = (qu, qv, k, v, r)
  got = jax.grad(loss(lambda *a: attention_lib.attend(*a, rel, mask)), argnums=range(5))(*args)
  want = jax.grad(loss(autodiff_attend), argnums=range(5))(*args)
  tol = 1e-5 if dtype == jnp.float32 else 3e-2
  for name, g, w in zip(("qu", "qv", "k", "v", "r"), got, want):
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=tol,
                               atol=tol, err_msg=name)
  # Padding queries (segment 0) get no gradient.
  assert np.all(np.asarray(got[0], np.float32)[0, 5:] == 0)


def test_dot_product_attention_implementation_matches_ours(module_and_params):
  """implementation='xla' (jax.nn.dot_product_attention with the position term as its bias; the
  call 'cudnn' makes on a GPU) gives our outputs and gradients, padding and gapped ids included."""
  _, params = module_and_params
  x, seg, pos = _inputs()
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  weights = jnp.asarray(np.random.RandomState(3).randn(B, T, D), jnp.float32)
  results = []
  for implementation in ("slam", "xla"):
    module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                                 max_relative_distance=M,
                                                 implementation=implementation)
    loss = lambda p, x: jnp.sum(module.apply({"params": p}, x, mask, rel) * weights)
    results.append((module.apply({"params": params}, x, mask, rel),
                    jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))))
  (ours, ours_grads), (lib, lib_grads) = results
  np.testing.assert_allclose(np.asarray(lib), np.asarray(ours), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(lib), _numpy_reference(params, x, seg, pos), rtol=1e-4,
                             atol=1e-5)
  for got, want in zip(jax.tree_util.tree_leaves(lib_grads),
                       jax.tree_util.tree_leaves(ours_grads)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_dot_product_attention_zeroes_fully_masked_rows(module_and_params):
  _, params = module_and_params
  x, _, pos = _inputs()
  mask, rel = attention_lib.attention_inputs(jnp.zeros((B, T), jnp.int32), jnp.asarray(pos), M)
  module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                               max_relative_distance=M, implementation="xla")
  got = np.asarray(module.apply({"params": params}, x, mask, rel))
  # Without the row mask the library's softmax would average every value (a non-bias output).
  np.testing.assert_allclose(got, np.broadcast_to(np.asarray(params["out"]["bias"]), got.shape),
                             atol=1e-6)


def test_dot_product_attention_refuses_dropout(module_and_params):
  _, params = module_and_params
  x, seg, pos = _inputs()
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                               max_relative_distance=M, dropout_rate=0.1,
                                               implementation="xla")
  with pytest.raises(ValueError, match="dropout"):
    module.apply({"params": params}, x, mask, rel)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the refusal off GPUs")
def test_cudnn_implementation_off_gpu_says_what_it_needs(module_and_params):
  _, params = module_and_params
  x, seg, pos = _inputs()
  mask, rel = attention_lib.attention_inputs(jnp.asarray(seg), jnp.asarray(pos), M)
  module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                               max_relative_distance=M, dtype=jnp.bfloat16,
                                               implementation="cudnn")
  with pytest.raises(ValueError, match="NVIDIA GPU"):
    module.apply({"params": params}, x, mask, rel)


def test_shaw_index_is_key_minus_query_clamped():
  pos = jnp.asarray([[0, 1, 2, 10]], jnp.int32)
  idx = np.asarray(attention_lib.shaw_index(pos, 3, 1))
  assert idx[0, 0, 1] == 1 + 3  # key one after the query
  assert idx[0, 0, 3] == 1 + 3  # +10 clamped to +1
  assert idx[0, 3, 0] == 0  # -10 clamped to -3
  assert idx[0, 2, 1] == -1 + 3


def test_shaw_position_term_matches_numpy_reference():
  """position_term='shaw': logit = (q.k + q.E[clip(p_k - p_q, -L, R) + L]) / sqrt(d), one
  distance table shared by the heads, no u/v biases (HF Wav2Vec2Bert 'relative_key')."""
  x, seg, pos = _inputs()
  left, right = 3, 1
  module = attention_lib.RelativeSelfAttention(num_heads=H, head_dim=D // H,
                                               max_relative_distance=M, position_term="shaw",
                                               shaw_distances=(left, right))
  mask = attention_lib.attention_mask(jnp.asarray(seg))
  idx = attention_lib.shaw_index(jnp.asarray(pos), left, right)
  params = module.init(jax.random.PRNGKey(0), jnp.asarray(x), mask, idx)["params"]
  params = nn.meta.unbox(params)
  assert set(params) == {"query", "key", "value", "out", "distance_embedding"}
  table = np.random.RandomState(5).randn(left + right + 1, D // H).astype(np.float32)
  params = dict(params, distance_embedding=jnp.asarray(table))
  got = np.asarray(module.apply({"params": params}, jnp.asarray(x), mask, idx))
  p = jax.tree_util.tree_map(np.asarray, params)
  hd = D // H
  q = np.einsum("btd,dhk->bthk", x, p["query"]["kernel"]) + p["query"]["bias"]
  k = np.einsum("btd,dhk->bthk", x, p["key"]["kernel"]) + p["key"]["bias"]
  v = np.einsum("btd,dhk->bthk", x, p["value"]["kernel"]) + p["value"]["bias"]
  dist = np.clip(pos[:, None, :] - pos[:, :, None], -left, right) + left  # [b, q, k]
  logits = (np.einsum("bqhd,bkhd->bhqk", q, k)
            + np.einsum("bqhd,bqkd->bhqk", q, table[dist])) / np.sqrt(hd)
  valid = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0) & (seg[:, None, :] > 0)
  logits = np.where(valid[:, None], logits, -1e30)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = probs / probs.sum(-1, keepdims=True) * valid.any(-1)[:, None, :, None]
  out = np.einsum("bhqk,bkhd->bqhd", probs, v)
  want = np.einsum("bqhd,hde->bqe", out, p["out"]["kernel"]) + p["out"]["bias"]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
