"""STM: binary cross-entropy known answer and the in-batch transcript roll."""

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import types
from slam_jax.losses import stm


def test_stm_loss_matches_numpy():
  logits = np.array([2.0, -1.0, 0.5, 3.0], np.float32)
  labels = np.array([1, 0, 0, 1], np.float32)
  weights = np.array([1, 1, 1, 0], np.float32)
  loss, metrics = stm.stm_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights))
  p = 1 / (1 + np.exp(-logits[:3]))
  ref = -np.mean(labels[:3] * np.log(p) + (1 - labels[:3]) * np.log(1 - p))
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], 2 / 3, rtol=1e-6)
  assert float(metrics["count"]) == 3
  zero, m0 = stm.stm_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.zeros(4))
  assert float(zero) == 0.0 and float(m0["count"]) == 0.0


def test_roll_transcripts_swaps_half_of_the_paired_rows_among_themselves():
  kind = np.array([2, 0, 2, 1, 2, 2, 2, 0, 2], np.int32)
  paired = kind == types.KIND_PAIRED
  for seed in range(10):
    swap = stm.roll_transcripts(jax.random.key(seed), jnp.asarray(paired))
    src, swapped = np.asarray(swap.source), np.asarray(swap.swapped)
    assert swapped.sum() == paired.sum() // 2
    assert not swapped[~paired].any()
    np.testing.assert_array_equal(src[~swapped], np.flatnonzero(~swapped))
    assert np.all(paired[src[swapped]]) and np.all(src[swapped] != np.flatnonzero(swapped))
  a = stm.roll_transcripts(jax.random.key(3), jnp.asarray(paired))
  b = stm.roll_transcripts(jax.random.key(3), jnp.asarray(paired))
  np.testing.assert_array_equal(a.source, b.source)


def test_roll_transcripts_without_enough_paired_rows():
  for kind in ([0, 1, 0], [0, 2, 1]):
    swap = stm.roll_transcripts(jax.random.key(0), jnp.asarray(np.array(kind) == 2))
    assert not np.asarray(swap.swapped).any()
    np.testing.assert_array_equal(swap.source, np.arange(3))
