"""Feature encoder: length arithmetic and padding invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.models import speech as speech_lib

D, C, F = 8, 3, 80


def _conv_len(n):
  # (n + 2*pad - kernel) // stride + 1 per conv, two convs (pad 1, kernel 3, stride 2).
  for _ in range(2):
    n = (n + 2 - 3) // 2 + 1
  return max(n, 0)


@pytest.mark.parametrize("n", list(range(0, 23)) + [99, 100, 101, 1000, 1001])
def test_subsampled_lengths_matches_conv_arithmetic(n):
  assert speech_lib.subsampled_lengths(n) == _conv_len(n) == -(-n // 4)
  arr = speech_lib.subsampled_lengths(np.asarray([n], np.int32))
  assert arr.dtype == np.int32 and int(arr[0]) == _conv_len(n)
  jarr = speech_lib.subsampled_lengths(jnp.asarray([n], jnp.int32))
  assert int(jarr[0]) == _conv_len(n)


@pytest.fixture(scope="module")
def encoder_and_params():
  enc = speech_lib.FeatureEncoder(model_dim=D, channels=C)
  x = jnp.zeros((1, 16, F), jnp.float32)
  params = jax.jit(enc.init)(jax.random.PRNGKey(0), x, jnp.ones((1, 16), jnp.int32))
  return enc, params


@pytest.mark.parametrize("frames", [13, 14, 15, 16])
def test_output_shape_matches_subsampled_frames(encoder_and_params, frames):
  enc, params = encoder_and_params
  lengths = np.array([frames, frames - 3, 1, 0])
  mask = (np.arange(frames)[None] < lengths[:, None]).astype(np.int32)
  x = np.random.RandomState(frames).randn(4, frames, F).astype(np.float32)
  feats, valid = enc.apply(params, x, mask)
  assert feats.shape == (4, speech_lib.subsampled_frames(frames), D)
  np.testing.assert_array_equal(np.asarray(valid).sum(-1),
                                [_conv_len(int(n)) for n in lengths])
  np.testing.assert_array_equal(np.asarray(valid), np.asarray(speech_lib.subsampled_mask(mask)))
  assert np.all(np.asarray(feats)[~np.asarray(valid)] == 0.0)


@pytest.mark.parametrize("length", [9, 10, 11, 12])
def test_valid_outputs_do_not_depend_on_padding(encoder_and_params, length):
  """Same utterance alone vs padded to 21 frames with garbage in the padding."""
  enc, params = encoder_and_params
  rng = np.random.RandomState(length)
  utt = rng.randn(1, length, F).astype(np.float32)
  alone, valid_alone = enc.apply(params, utt, np.ones((1, length), np.int32))
  padded = np.concatenate([utt, 100.0 * rng.randn(1, 21 - length, F).astype(np.float32)], 1)
  mask = (np.arange(21) < length).astype(np.int32)[None]
  got, valid = enc.apply(params, padded, mask)
  n = _conv_len(length)
  assert int(np.asarray(valid).sum()) == n == int(np.asarray(valid_alone).sum())
  np.testing.assert_allclose(np.asarray(got)[:, :n], np.asarray(alone)[:, :n], rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("frames,mel", [(9, 8), (10, 7)])
def test_conv_as_patches_matches_xla_conv(frames, mel, monkeypatch):
  """The XLA:CPU path of Conv2D (strided patches x kernel matrix) against lax's convolution:
  outputs and gradients, odd and even sizes on both axes."""
  conv = speech_lib.Conv2D(features=5)
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(2, frames, mel, 3), jnp.float32)
  params = conv.init(jax.random.PRNGKey(0), x)["params"]
  weights = jnp.asarray(rng.randn(2, speech_lib._conv_out(frames), speech_lib._conv_out(mel), 5),
                        jnp.float32)
  loss = lambda p, x: jnp.sum(conv.apply({"params": p}, x) * weights)
  results = {}
  for as_matmul in (True, False):
    monkeypatch.setattr(speech_lib, "_conv_as_matmul", lambda v=as_matmul: v)
    results[as_matmul] = (conv.apply({"params": params}, x),
                          jax.grad(loss, argnums=(0, 1))(params, x))
  (got, got_grads), (want, want_grads) = results[True], results[False]
  assert got.shape == want.shape == weights.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  for g, w in zip(jax.tree_util.tree_leaves(got_grads), jax.tree_util.tree_leaves(want_grads)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-5)


def test_strided_patches_known_answer():
  # 1 x 3 x 3 x 1 input 1..9, 3x3 windows at stride 2 with padding 1: output 2 x 2 windows.
  x = jnp.arange(1, 10, dtype=jnp.float32).reshape(1, 3, 3, 1)
  patches = np.asarray(speech_lib.strided_patches(x, 3, 2, 1))
  assert patches.shape == (1, 2, 2, 9)
  np.testing.assert_array_equal(patches[0, 0, 0], [0, 0, 0, 0, 1, 2, 0, 4, 5])
  np.testing.assert_array_equal(patches[0, 1, 1], [5, 6, 0, 8, 9, 0, 0, 0, 0])


@pytest.mark.parametrize("length", [0, 1, 7, 12])
def test_stacked_frames_known_answer_and_padding(length):
  """StackedFrames: frames (2t, 2t+1) concatenated -> LayerNorm -> linear; floor(L / 2) valid
  steps; valid outputs independent of padding."""
  rng = np.random.RandomState(length)
  frames, mel, d = 12, 3, 4
  x = rng.randn(1, frames, mel).astype(np.float32)
  mask = (np.arange(frames) < length).astype(np.int32)[None]
  module = speech_lib.StackedFrames(model_dim=d, stack=2, epsilon=1e-5)
  params = module.init(jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(mask))
  params = jax.tree_util.tree_map(lambda p: p + 0.3, nn_unbox(params))
  out, valid = module.apply(params, jnp.asarray(x), jnp.asarray(mask))
  assert out.shape == (1, frames // 2, d)
  np.testing.assert_array_equal(np.asarray(valid)[0], np.arange(frames // 2) < length // 2)
  p = jax.tree_util.tree_map(np.asarray, params["params"])
  stacked = x.reshape(1, frames // 2, 2 * mel)
  normed = (stacked - stacked.mean(-1, keepdims=True)) / np.sqrt(stacked.var(-1, keepdims=True)
                                                               + 1e-5)
  want = (normed * p["norm"]["scale"] + p["norm"]["bias"]) @ p["proj"]["kernel"] + p["proj"]["bias"]
  v = np.asarray(valid)[0]
  np.testing.assert_allclose(np.asarray(out)[0][v], want[0][v], rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(out)[0][~v] == 0)
  # Garbage in the padding changes nothing at valid steps.
  noisy = np.where(mask[..., None] > 0, x, 100.0).astype(np.float32)
  out2, _ = module.apply(params, jnp.asarray(noisy), jnp.asarray(mask))
  np.testing.assert_array_equal(np.asarray(out2), np.asarray(out))


def nn_unbox(tree):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  return nn.meta.unbox(tree)
