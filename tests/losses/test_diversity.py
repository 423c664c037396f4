"""Known-answer tests of the codebook diversity loss."""

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.losses import diversity

G, V = 2, 5


def test_uniform_codebook_has_zero_loss_and_full_perplexity():
  probs = jnp.full((2, 3, G, V), 1.0 / V)
  loss, metrics = diversity.diversity_loss(probs, jnp.ones((2, 3)))
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)
  np.testing.assert_allclose(metrics["perplexity"], G * V, rtol=1e-5)


def test_collapsed_codebook():
  probs = jax.nn.one_hot(jnp.zeros((2, 3, G), jnp.int32), V)
  loss, metrics = diversity.diversity_loss(probs, jnp.ones((2, 3)))
  np.testing.assert_allclose(metrics["perplexity"], G, rtol=1e-5)
  np.testing.assert_allclose(loss, (G * V - G) / (G * V), rtol=1e-5)


def test_matches_numpy_and_ignores_unweighted_frames():
  rng = np.random.default_rng(0)
  probs = jax.nn.softmax(jnp.asarray(rng.standard_normal((2, 4, G, V)), jnp.float32), axis=-1)
  weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], np.float32)
  p = np.asarray(probs)[weights > 0].mean(axis=0)  # [G, V]
  ppl = np.sum(np.exp(-np.sum(p * np.log(p), axis=-1)))
  changed = probs.at[0, 3].set(jax.nn.one_hot(jnp.zeros(G, jnp.int32), V))  # excluded frame
  loss, metrics = diversity.diversity_loss(changed, jnp.asarray(weights))
  np.testing.assert_allclose(metrics["perplexity"], ppl, rtol=1e-5)
  np.testing.assert_allclose(loss, (G * V - ppl) / (G * V), rtol=1e-5)
  assert float(metrics["count"]) == 3.0


def test_no_frames_gives_zero():
  loss, metrics = diversity.diversity_loss(jnp.full((1, 2, G, V), 0.2), jnp.zeros((1, 2)))
  assert float(loss) == 0.0 and float(metrics["perplexity"]) == 0.0
