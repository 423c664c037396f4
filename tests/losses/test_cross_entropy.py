"""Label-smoothed cross-entropy against a hand computation."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.losses import cross_entropy


def test_hand_computed_small_case():
  # One row, two positions (the second is padding), three classes.
  logits = jnp.array([[[0.0, math.log(2.0), math.log(3.0)], [5.0, 0.0, 0.0]]])
  targets = jnp.array([[2, 0]])
  weights = jnp.array([[1.0, 0.0]])
  eps = 0.3
  # p = (1, 2, 3) / 6: NLL = -log(1/2); mean over classes of -log p = -(log 1/6 + log 2/6 + log 3/6)/3.
  nll = math.log(2.0)
  smooth = -(math.log(1 / 6) + math.log(2 / 6) + math.log(3 / 6)) / 3
  expected = (1 - eps) * nll + eps * smooth
  total, count, metrics = cross_entropy.label_smoothed_cross_entropy(logits, targets, weights,
                                                                     eps)
  np.testing.assert_allclose(float(total), expected, rtol=1e-6)
  assert float(count) == 1.0
  np.testing.assert_allclose(float(metrics["nll"]), nll, rtol=1e-6)
  assert float(metrics["accuracy"]) == 1.0


def test_no_smoothing_is_nll_and_shapes_are_checked():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 5, size=(2, 3)))
  weights = jnp.ones((2, 3))
  total, count, _ = cross_entropy.label_smoothed_cross_entropy(logits, targets, weights, 0.0)
  log_p = np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
  want = -np.take_along_axis(log_p, np.asarray(targets)[..., None], -1).sum()
  np.testing.assert_allclose(float(total), want, rtol=1e-5)
  assert float(count) == 6
  with pytest.raises(ValueError, match="targets must have shape"):
    cross_entropy.label_smoothed_cross_entropy(logits, targets[:, :2], weights, 0.0)
