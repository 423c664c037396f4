"""Conformer pieces: depthwise conv vs XLA's grouped conv, segment isolation, masked group norm,
and equivalence of scanned / unrolled / rematerialised stacks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from slam_jax.models import attention as attention_lib
from slam_jax.models import conformer as conformer_lib
from slam_jax.models import encoder as encoder_lib
from slam_jax.models import layers as layers_lib


def _grouped_conv(x, kernel):
  """Reference: lax.conv_general_dilated with feature_group_count=C, 'SAME' padding."""
  c = x.shape[-1]
  return lax.conv_general_dilated(
      x, kernel[:, None, :], window_strides=(1,), padding="SAME",
      dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=c)


@pytest.mark.parametrize("k_size", [1, 3, 5])
def test_depthwise_conv_matches_grouped_conv(k_size):
  rng = np.random.RandomState(k_size)
  x = jnp.asarray(rng.randn(2, 9, 6), jnp.float32)
  kernel = jnp.asarray(rng.randn(k_size, 6), jnp.float32)
  seg = jnp.ones((2, 9), jnp.int32)
  got = layers_lib.depthwise_conv1d(x, kernel, seg)
  np.testing.assert_allclose(np.asarray(got), np.asarray(_grouped_conv(x, kernel)), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("loop_taps", [True, False])
@pytest.mark.parametrize("k_size", [1, 5])
def test_depthwise_conv_gradients_match_grouped_conv(k_size, loop_taps, monkeypatch):
  """The hand-written VJP (reversed-kernel conv, per-tap products), with the CPU loops and with
  the accelerator's unrolled taps, vs autodiff of XLA's grouped conv, with a norm-like expression
  on both sides of the conv (what made XLA:CPU fuse and recompute producers per tap)."""
  monkeypatch.setattr(layers_lib, "_loop_taps", lambda: loop_taps)
  rng = np.random.RandomState(10 + k_size)
  x = jnp.asarray(rng.randn(3, 11, 6), jnp.float32)
  kernel = jnp.asarray(rng.randn(k_size, 6), jnp.float32)
  weights = jnp.asarray(rng.randn(3, 11, 6), jnp.float32)
  seg = jnp.ones((3, 11), jnp.int32)

  def loss(conv, x, kernel):
    y = conv(jax.nn.sigmoid(x) * x, kernel)
    y = (y - y.mean(-1, keepdims=True)) / jnp.sqrt(y.var(-1, keepdims=True) + 1.0)
    return jnp.sum(weights * y)

  ours = jax.grad(lambda x, k: loss(lambda a, b: layers_lib.depthwise_conv1d(a, b, seg), x, k),
                  argnums=(0, 1))(x, kernel)
  ref = jax.grad(lambda x, k: loss(_grouped_conv, x, k), argnums=(0, 1))(x, kernel)
  for got, want in zip(ours, ref):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_depthwise_conv_does_not_cross_segments_or_read_padding():
  rng = np.random.RandomState(0)
  x = rng.randn(1, 10, 4).astype(np.float32)
  kernel = jnp.asarray(rng.randn(5, 4), jnp.float32)
  seg = np.array([[1, 1, 1, 1, 2, 2, 2, 0, 0, 0]], np.int32)
  got = np.asarray(layers_lib.depthwise_conv1d(jnp.asarray(x), kernel, jnp.asarray(seg)))
  # Each segment alone, as if it were its own zero-padded sequence.
  first = np.asarray(_grouped_conv(jnp.asarray(x[:, :4]), kernel))
  second = np.asarray(_grouped_conv(jnp.asarray(x[:, 4:7]), kernel))
  np.testing.assert_allclose(got[:, :4], first, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[:, 4:7], second, rtol=1e-5, atol=1e-5)


def test_masked_group_norm_ignores_padding():
  rng = np.random.RandomState(0)
  x = rng.randn(1, 6, 8).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 0, 0]])
  garbage = x.copy()
  garbage[:, 4:] = 1e3
  a = np.asarray(layers_lib.masked_group_norm(jnp.asarray(x), jnp.asarray(mask), 2))
  b = np.asarray(layers_lib.masked_group_norm(jnp.asarray(garbage), jnp.asarray(mask), 2))
  np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-5, atol=1e-5)
  group0 = a[0, :4, :4]
  np.testing.assert_allclose(group0.mean(), 0.0, atol=1e-5)
  np.testing.assert_allclose(group0.std(), 1.0, atol=1e-3)


# ---- stacks -------------------------------------------------------------------------------------

B, T = 2, 9


def _stack_inputs(dim):
  rng = np.random.RandomState(3)
  x = jnp.asarray(rng.randn(B, T, dim), jnp.float32)
  seg = jnp.asarray([[1] * 6 + [0] * 3, [1] * 4 + [2] * 5], jnp.int32)
  pos = jnp.asarray([list(range(9)), list(range(4)) + list(range(5))], jnp.int32)
  return x, seg, pos


@pytest.fixture(scope="module")
def scanned():
  cfg = encoder_lib.get_preset("tiny")
  stack = conformer_lib.ConformerStack(cfg, num_layers=2)
  x, seg, pos = _stack_inputs(cfg.model_dim)
  params = jax.jit(stack.init)(jax.random.PRNGKey(0), x, seg, pos)["params"]
  out = jax.jit(stack.apply)({"params": params}, x, seg, pos)
  return cfg, params, out


def test_scanned_params_have_layers_axis(scanned):
  _, params, _ = scanned
  kernel = params["layers"]["attention"]["query"]["kernel"]
  assert isinstance(kernel, nn.Partitioned)
  assert kernel.names == ("layers", "embed", "heads", "kv")
  assert kernel.value.shape[0] == 2


def test_unrolled_equals_scanned(scanned):
  cfg, params, want = scanned
  cfg = cfg.replace(scan_layers=False)
  stack = conformer_lib.ConformerStack(cfg, num_layers=2)
  x, seg, pos = _stack_inputs(cfg.model_dim)
  layer_params = nn.unbox(params)["layers"]
  unrolled = {f"layer_{i}": jax.tree_util.tree_map(lambda p, i=i: p[i], layer_params)
              for i in range(2)}
  # Same structure as the unrolled module's own init.
  own = jax.eval_shape(stack.init, jax.random.PRNGKey(0), x, seg, pos)["params"]
  assert jax.tree_util.tree_structure(nn.unbox(own)) == jax.tree_util.tree_structure(unrolled)
  got = jax.jit(stack.apply)({"params": unrolled}, x, seg, pos)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_library_attention_stack_equals_ours(scanned, monkeypatch):
  """attention_implementation='xla' reaches the stack's layers and changes no number."""
  cfg, params, want = scanned
  calls = []
  library_attention = attention_lib._dot_product_attention
  monkeypatch.setattr(attention_lib, "_dot_product_attention",
                      lambda *args: calls.append(args[-1]) or library_attention(*args))
  stack = conformer_lib.ConformerStack(cfg.replace(attention_implementation="xla"), num_layers=2)
  x, seg, pos = _stack_inputs(cfg.model_dim)
  got = jax.jit(stack.apply)({"params": params}, x, seg, pos)
  assert calls and set(calls) == {"xla"}  # traced once in the scanned body
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_stack_zeroes_padding_and_isolates_packed_segments(scanned):
  cfg, params, out = scanned
  out = np.asarray(out)
  assert np.all(out[0, 6:] == 0.0)
  # Segment 2 of row 1 alone (left-aligned, padded) gives the same outputs.
  x, seg, pos = _stack_inputs(cfg.model_dim)
  x2 = jnp.concatenate([x[1:, 4:], jnp.zeros((1, 4, cfg.model_dim))], axis=1)
  seg2 = jnp.asarray([[1] * 5 + [0] * 4], jnp.int32)
  pos2 = jnp.asarray([list(range(9))], jnp.int32)
  alone = jax.jit(conformer_lib.ConformerStack(cfg, num_layers=2).apply)(
      {"params": params}, x2, seg2, pos2)
  np.testing.assert_allclose(np.asarray(alone)[0, :5], out[1, 4:], rtol=1e-4, atol=1e-5)


def test_group_norm_stack_is_padding_invariant():
  cfg = encoder_lib.get_preset("tiny", conv_norm="group")
  stack = conformer_lib.ConformerStack(cfg, num_layers=1)
  x, _, pos = _stack_inputs(cfg.model_dim)
  seg = jnp.asarray([[1] * 6 + [0] * 3, [1] * 9], jnp.int32)
  params = jax.jit(stack.init)(jax.random.PRNGKey(0), x, seg, pos)["params"]
  assert "conv_norm_scale" in params["layers"]["conv"]
  apply = jax.jit(stack.apply)
  short = apply({"params": params}, x[:, :6], seg[:, :6], pos[:, :6])
  garbage = x.at[0, 6:].set(1e3)
  long = apply({"params": params}, garbage, seg, pos)
  np.testing.assert_allclose(np.asarray(long)[0, :6], np.asarray(short)[0], rtol=1e-4, atol=1e-5)
