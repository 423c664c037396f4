"""layers.project: the CPU weight-gradient path against autodiff of the einsum it replaces; the
depthwise conv's hand-written VJP against autodiff of shifted multiply-adds and a grouped conv."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from slam_jax.models import layers as layers_lib


def _einsum_project(x, kernel, n_in):
  letters = "abcdefgh"
  batch, ins = letters[:x.ndim - n_in], letters[x.ndim - n_in:x.ndim]
  outs = letters[x.ndim:x.ndim + kernel.ndim - n_in]
  return jnp.einsum(f"{batch}{ins},{ins}{outs}->{batch}{outs}", x, kernel)


# (x shape, kernel shape, n_in): x narrower than the output (dw = x^T dy), wider (dw = (dy^T x)^T),
# and the attention's multi-axis kernels ([embed] -> [heads, kv] and [heads, kv] -> [embed]).
CASES = [((2, 5, 3), (3, 7), 1), ((2, 5, 7), (7, 3), 1), ((2, 5, 6), (6, 2, 4), 1),
         ((2, 5, 2, 4), (2, 4, 6), 2)]


@pytest.mark.parametrize("x_shape,k_shape,n_in", CASES)
@pytest.mark.parametrize("canonical", [True, False])
def test_project_matches_einsum_values_and_gradients(x_shape, k_shape, n_in, canonical,
                                                     monkeypatch):
  monkeypatch.setattr(layers_lib, "_materialised_weight_grads", lambda: canonical)
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(*x_shape), jnp.float32)
  kernel = jnp.asarray(rng.randn(*k_shape), jnp.float32)
  out_shape = x_shape[:len(x_shape) - n_in] + k_shape[n_in:]
  weights = jnp.asarray(rng.randn(*out_shape), jnp.float32)
  loss = lambda fn: (lambda x, k: jnp.sum(fn(x, k, n_in) * weights))
  got = layers_lib.project(x, kernel, n_in)
  want = _einsum_project(x, kernel, n_in)
  assert got.shape == out_shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  got_grads = jax.grad(loss(layers_lib.project), argnums=(0, 1))(x, kernel)
  want_grads = jax.grad(loss(_einsum_project), argnums=(0, 1))(x, kernel)
  for name, g, w in zip(("x", "kernel"), got_grads, want_grads):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's dot layouts")
@pytest.mark.parametrize("d_in,d_out", [(16, 64), (64, 16)])
def test_cpu_weight_gradient_dot_is_row_major(d_in, d_out, monkeypatch):
  """The point of the custom VJP: XLA:CPU compiles the kernel's gradient without a dot whose lhs
  contracts its major axis (YNNPACK refuses those and XLA falls back to a slower Eigen dot);
  plain autodiff of the einsum does produce one."""
  x = jnp.ones((4, 32, d_in), jnp.float32)
  kernel = jnp.ones((d_in, d_out), jnp.float32)

  def column_major_dots(canonical):
    monkeypatch.setattr(layers_lib, "_materialised_weight_grads", lambda: canonical)
    grad = jax.jit(jax.grad(lambda k, x: jnp.sum(layers_lib.project(x, k, 1) ** 2)))
    hlo = grad.lower(kernel, x).compile().as_text()
    return re.findall(r"dot\([^)]*\), lhs_contracting_dims=\{0\}", hlo)

  assert column_major_dots(False), "autodiff no longer makes a column-major dot: test is moot"
  assert not column_major_dots(True)


def _masked_taps_conv(x, kernel, segment_ids, left):
  """Reference depthwise conv: plain jnp taps masked by `neighbour_valid` (autodiff, no VJP)."""
  k = kernel.shape[0]
  valid = layers_lib.neighbour_valid(segment_ids, k, left)
  x_pad = jnp.pad(x, ((0, 0), (left, k - 1 - left), (0, 0)))
  t = x.shape[1]
  return sum(jnp.where(valid[i][..., None], x_pad[:, i:i + t], 0.0) * kernel[i][None, None]
             for i in range(k))


@pytest.mark.parametrize("k_size", [1, 3, 5])
def test_causal_depthwise_conv_matches_left_padded_grouped_conv(k_size):
  """causal=True is torch's Conv1d after F.pad(x, (K-1, 0)) (w2v-BERT 2.0): output t reads
  frames t-K+1 .. t."""
  rng = np.random.RandomState(k_size)
  x = jnp.asarray(rng.randn(2, 9, 6), jnp.float32)
  kernel = jnp.asarray(rng.randn(k_size, 6), jnp.float32)
  got = layers_lib.depthwise_conv1d(x, kernel, jnp.ones((2, 9), jnp.int32), causal=True)
  want = jax.lax.conv_general_dilated(
      x, kernel[:, None, :], window_strides=(1,), padding=[(k_size - 1, 0)],
      dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=6)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  # The first output reads frame 0 only (and the last tap).
  np.testing.assert_allclose(np.asarray(got[:, 0]), np.asarray(x[:, 0] * kernel[-1][None]), rtol=1e-5)


@pytest.mark.parametrize("loop_taps", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_depthwise_vjp_with_segments_matches_autodiff(causal, loop_taps, monkeypatch):
  """The hand-written VJP with packed segments and padding, centred and causal (whose backward
  mask is the mirrored one), against autodiff of masked taps."""
  monkeypatch.setattr(layers_lib, "_loop_taps", lambda: loop_taps)
  rng = np.random.RandomState(3)
  x = jnp.asarray(rng.randn(2, 10, 4), jnp.float32)
  kernel = jnp.asarray(rng.randn(5, 4), jnp.float32)
  weights = jnp.asarray(rng.randn(2, 10, 4), jnp.float32)
  seg = jnp.asarray([[1, 1, 1, 2, 2, 2, 2, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], jnp.int32)
  left = 4 if causal else 2

  def loss(fn, x, k):
    return jnp.sum(weights * fn(jnp.tanh(x), k))

  ours = jax.grad(lambda x, k: loss(
      lambda a, b: layers_lib.depthwise_conv1d(a, b, seg, causal=causal), x, k),
                  argnums=(0, 1))(x, kernel)
  ref = jax.grad(lambda x, k: loss(lambda a, b: _masked_taps_conv(a, b, seg, left), x, k),
                 argnums=(0, 1))(x, kernel)
  np.testing.assert_allclose(
      np.asarray(layers_lib.depthwise_conv1d(x, kernel, seg, causal=causal)),
      np.asarray(_masked_taps_conv(x, kernel, seg, left)), rtol=1e-5, atol=1e-5)
  for got, want in zip(ours, ref):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_layer_norm_epsilon_is_used():
  x = jnp.asarray([[0.0, 0.1]], jnp.float32)  # variance 0.0025: eps 1e-2 changes the result
  small = layers_lib.layer_norm(jnp.float32, epsilon=1e-6)
  big = layers_lib.layer_norm(jnp.float32, epsilon=1e-2)
  params = small.init(jax.random.PRNGKey(0), x)
  np.testing.assert_allclose(np.asarray(small.apply(params, x)), [[-1.0, 1.0]], rtol=1e-3)
  np.testing.assert_allclose(np.asarray(big.apply(params, x)),
                             [[-0.05 / np.sqrt(0.0125), 0.05 / np.sqrt(0.0125)]], rtol=1e-4)


# ---- depthwise conv: the hand-written VJP against autodiff references ----------------------------


def _reference_depthwise(x, kernel, segment_ids, bias):
  """The autodiffed shifted multiply-adds (the formulation before the hand-written VJP)."""
  k_size = kernel.shape[0]
  half, time = k_size // 2, x.shape[1]
  valid = layers_lib.neighbour_valid(segment_ids, k_size)
  x_pad = jnp.pad(x, ((0, 0), (half, half), (0, 0)))
  acc = jnp.zeros(x.shape, jnp.float32)
  for k in range(k_size):
    tap = jnp.where(valid[k][..., None], x_pad[:, k:k + time, :], 0.0)
    acc = acc + tap * kernel[k][None, None, :]
  return acc + bias[None, None, :]


@pytest.mark.parametrize("k_size", [1, 3, 7])
def test_depthwise_conv_vjp_matches_autodiff_with_segments_and_padding(k_size):
  rng = np.random.RandomState(k_size)
  x = jnp.asarray(rng.randn(3, 12, 5), jnp.float32)
  kernel = jnp.asarray(rng.randn(k_size, 5), jnp.float32)
  bias = jnp.asarray(rng.randn(5), jnp.float32)
  seg = jnp.asarray([[1] * 12, [1] * 5 + [2] * 4 + [0] * 3, [3] * 2 + [0] * 10], jnp.int32)
  probe = jnp.asarray(rng.randn(3, 12, 5), jnp.float32)

  def loss(fn):
    return lambda x, w, b: jnp.sum(fn(x, w, seg, b) * probe)

  want = jax.grad(loss(_reference_depthwise), argnums=(0, 1, 2))(x, kernel, bias)
  got = jax.grad(loss(layers_lib.depthwise_conv1d), argnums=(0, 1, 2))(x, kernel, bias)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)


def test_depthwise_conv_vjp_matches_grouped_conv_gradients():
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(2, 9, 6), jnp.float32)
  kernel = jnp.asarray(rng.randn(5, 6), jnp.float32)
  seg = jnp.ones((2, 9), jnp.int32)

  def grouped(x, w):
    return lax.conv_general_dilated(x, w[:, None, :], (1,), "SAME",
                                    dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=6)

  want = jax.grad(lambda x, w: jnp.sum(jnp.sin(grouped(x, w))), argnums=(0, 1))(x, kernel)
  got = jax.grad(lambda x, w: jnp.sum(jnp.sin(layers_lib.depthwise_conv1d(x, w, seg))),
                 argnums=(0, 1))(x, kernel)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
