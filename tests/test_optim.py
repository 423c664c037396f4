"""slam_jax.optim.adamw against the optax chain it replaces (clip_by_global_norm + adamw)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from slam_jax import optim as optim_lib


def _params():
  rng = np.random.RandomState(0)
  return {"dense": {"kernel": jnp.asarray(rng.randn(4, 3), jnp.float32),
                    "bias": jnp.asarray(rng.randn(3), jnp.float32)},
          "scale": jnp.asarray(rng.randn(5), jnp.float32)}


def _schedule(count):
  return 0.1 * (jnp.asarray(count, jnp.float32) + 1.0) ** -0.5


def _matrices(params):
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


@pytest.mark.parametrize("clip_norm", [0.0, 1.0])
def test_matches_optax_chain_over_steps(clip_norm):
  kwargs = dict(b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.05, mask=_matrices)
  ours = optim_lib.adamw(_schedule, clip_norm=clip_norm, **kwargs)
  parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
  reference = optax.chain(*parts, optax.adamw(_schedule, **kwargs))
  params_a = params_b = _params()
  state_a, state_b = ours.init(params_a), reference.init(params_b)
  rng = np.random.RandomState(1)
  norms = []
  for step in range(6):
    # Alternate small and large gradients so clipping is both idle and active.
    size = 0.1 if step % 2 else 3.0
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.randn(*p.shape) * size, p.dtype),
                                   params_a)
    norms.append(float(optax.global_norm(grads)))
    updates_a, state_a = jax.jit(ours.update)(grads, state_a, params_a)
    updates_b, state_b = jax.jit(reference.update)(grads, state_b, params_b)
    for got, want in zip(jax.tree_util.tree_leaves(updates_a), jax.tree_util.tree_leaves(updates_b)):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-7)
    params_a = optax.apply_updates(params_a, updates_a)
    params_b = optax.apply_updates(params_b, updates_b)
  assert min(norms) < 1.0 < max(norms)
  assert int(state_a.count) == 6
  for got, want in zip(jax.tree_util.tree_leaves(params_a), jax.tree_util.tree_leaves(params_b)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_weight_decay_follows_the_mask():
  params = _params()
  zero = jax.tree_util.tree_map(jnp.zeros_like, params)
  tx = optim_lib.adamw(0.1, weight_decay=0.5, mask=_matrices)
  updates, _ = tx.update(zero, tx.init(params), params)
  # Zero gradients: only decay moves a leaf, -lr * wd * p, and only on matrices.
  np.testing.assert_allclose(np.asarray(updates["dense"]["kernel"]),
                             -0.1 * 0.5 * np.asarray(params["dense"]["kernel"]), rtol=1e-6)
  assert np.all(np.asarray(updates["dense"]["bias"]) == 0)
  assert np.all(np.asarray(updates["scale"]) == 0)


def test_update_without_params_says_why():
  tx = optim_lib.adamw(0.1)
  params = _params()
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params))


def test_given_grad_norm_is_the_one_clipped_with():
  """The trainer passes the norm it already computed; the update must use it, not recompute."""
  params = _params()
  grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 2.0, p.dtype), params)
  tx = optim_lib.adamw(0.1, clip_norm=1.0)
  state = tx.init(params)
  norm = optax.global_norm(grads)
  computed, _ = tx.update(grads, state, params)
  given, _ = tx.update(grads, state, params, grad_norm=norm)
  for got, want in zip(jax.tree_util.tree_leaves(given), jax.tree_util.tree_leaves(computed)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # A first Adam step is scale-invariant, so compare the first moments: clipping by a norm 4x
  # the true one scales the clipped gradient (and so mu) by a further 1/4.
  _, state_true = tx.update(grads, state, params, grad_norm=norm)
  _, state_big = tx.update(grads, state, params, grad_norm=4.0 * norm)
  for big, true in zip(jax.tree_util.tree_leaves(state_big.mu),
                       jax.tree_util.tree_leaves(state_true.mu)):
    np.testing.assert_allclose(np.asarray(big), np.asarray(true) / 4.0, rtol=1e-6)


def test_global_norm_is_the_float64_norm_of_all_leaves():
  rng = np.random.default_rng(0)
  tree = {"a": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
          "b": [jnp.asarray(rng.normal(size=(7,)), jnp.bfloat16), jnp.asarray(2.5, jnp.float32)]}
  leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(tree)]
  expected = np.sqrt(sum(np.sum(x * x) for x in leaves))
  norm = optim_lib.global_norm(tree)
  assert norm.dtype == jnp.float32 and norm.shape == ()
  np.testing.assert_allclose(float(norm), expected, rtol=1e-6)
  np.testing.assert_allclose(float(optim_lib.global_norm({"a": tree["a"]})),
                             float(optax.global_norm({"a": tree["a"]})), rtol=1e-6)
  assert float(optim_lib.global_norm({})) == 0.0
