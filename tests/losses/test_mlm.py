"""Known-answer tests of the speech and text masked-prediction losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.losses import mlm


def _np_ce(logits, target):
  z = logits - logits.max()
  return np.log(np.exp(z).sum()) - z[target]


def test_text_mlm_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((2, 4, 7)).astype(np.float32)
  targets = rng.integers(0, 7, (2, 4)).astype(np.int32)
  mask = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], bool)
  logits[0, 0, targets[0, 0]] += 10.0  # one sure hit
  loss, metrics = mlm.text_mlm_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
  ref = [_np_ce(logits[b, t], targets[b, t]) for b, t in zip(*np.nonzero(mask))]
  acc = [float(np.argmax(logits[b, t]) == targets[b, t]) for b, t in zip(*np.nonzero(mask))]
  np.testing.assert_allclose(loss, np.mean(ref), rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], np.mean(acc))
  assert float(metrics["count"]) == 4


def test_speech_mlm_matches_numpy_over_frames_and_groups():
  rng = np.random.default_rng(1)
  logits = rng.standard_normal((2, 3, 2, 5)).astype(np.float32)
  ids = rng.integers(0, 5, (2, 3, 2)).astype(np.int32)
  mask = np.array([[1, 1, 0], [0, 1, 0]], bool)
  loss, metrics = mlm.speech_mlm_loss(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask))
  ref = [_np_ce(logits[b, t, g], ids[b, t, g]) for b, t in zip(*np.nonzero(mask)) for g in range(2)]
  np.testing.assert_allclose(loss, np.mean(ref), rtol=1e-5)
  assert float(metrics["count"]) == 3  # frames


def test_empty_mask_is_zero_with_zero_gradient():
  logits = jnp.ones((1, 3, 4))
  f = lambda x: mlm.text_mlm_loss(x, jnp.zeros((1, 3), jnp.int32), jnp.zeros((1, 3), bool))[0]
  assert float(f(logits)) == 0.0
  g = jax.grad(f)(logits)
  assert bool(jnp.all(g == 0.0))


def test_gradients_only_at_masked_positions():
  logits = jnp.asarray(np.random.default_rng(2).standard_normal((1, 4, 6)), jnp.float32)
  mask = jnp.asarray([[True, False, True, False]])
  g = jax.grad(lambda x: mlm.text_mlm_loss(x, jnp.ones((1, 4), jnp.int32), mask)[0])(logits)
  g = np.asarray(g)
  assert np.all(g[0, [1, 3]] == 0) and np.all(np.abs(g[0, [0, 2]]).sum(-1) > 0)


def test_shape_errors():
  with pytest.raises(ValueError, match="targets"):
    mlm.text_mlm_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32), jnp.zeros((2, 3), bool))
  with pytest.raises(ValueError, match="ids"):
    mlm.speech_mlm_loss(jnp.zeros((2, 3, 2, 4)), jnp.zeros((2, 3, 1), jnp.int32),
                        jnp.zeros((2, 3), bool))
