"""Shape checks and safe weighted means shared by the loss functions.

Every loss returns its mean over the positions it scores and reports that number (`count`); with no
positions the mean is exactly 0 (no 0/0), and so is its gradient. A caller may pass a `normaliser`
instead: the sum is then divided by it (the model passes the whole batch's count, scaled to the
microbatch, so that microbatches add up to the full-batch mean).
"""

from typing import Optional, Sequence, Tuple

import jax.numpy as jnp


def check_shape(name: str, x: jnp.ndarray, shape: Sequence) -> None:
  """Raises ValueError unless x.shape matches `shape` (None entries match anything)."""
  if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
    want = tuple("*" if s is None else s for s in shape)
    raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def weighted_mean(values: jnp.ndarray, weights: jnp.ndarray,
                  normaliser: Optional[jnp.ndarray] = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(sum(values * weights) / max(normaliser, 1), sum(weights)) in float32.

  `normaliser` defaults to sum(weights) (a plain weighted mean); a positive value below 1 (a
  microbatch's share of a small global count) is kept, only 0 is replaced by 1.

  `values` at zero-weight positions are selected away (not multiplied by 0), so a non-finite
  value there does not reach the forward result; callers still keep such values finite so that
  their gradients stay finite too.
  """
  w = weights.astype(jnp.float32)
  v = jnp.where(w > 0, values.astype(jnp.float32), 0.0)
  count = jnp.sum(w)
  if normaliser is None:
    return jnp.sum(v * w) / jnp.maximum(count, 1.0), count
  norm = jnp.asarray(normaliser, jnp.float32)
  return jnp.sum(v * w) / jnp.where(norm > 0, norm, 1.0), count
