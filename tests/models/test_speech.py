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
