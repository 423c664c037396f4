"""Label-smoothed cross-entropy of a sequence-to-sequence decoder (teacher forcing).

With smoothing e over V classes the target distribution is q = (1 - e) * onehot(y) + e / V
(Szegedy et al. 2016; fairseq's and t5x's convention up to the constant), so the per-position loss
is (1 - e) * NLL + e * mean_v(-log p_v). `nll` in the metrics is the unsmoothed NLL, from which
perplexity follows.
"""

from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from slam_jax.losses import reduce


def label_smoothed_cross_entropy(logits: jnp.ndarray, targets: jnp.ndarray,
                                 weights: jnp.ndarray, label_smoothing: float = 0.0
                                 ) -> Tuple[jnp.ndarray, jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Sum of the smoothed loss over weighted positions.

  Args:
    logits: [B, L, V] (any float dtype; computed in fp32).
    targets: int [B, L].
    weights: [B, L] (0 at padding).
    label_smoothing: e in [0, 1).

  Returns:
    (loss sum, normaliser = sum of weights, metrics {loss, nll, accuracy, tokens} as means over
    the weighted positions).
  """
  reduce.check_shape("logits", logits, (None, None, None))
  b, l, v = logits.shape
  reduce.check_shape("targets", targets, (b, l))
  reduce.check_shape("weights", weights, (b, l))
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(log_p, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  smooth = -jnp.mean(log_p, axis=-1)
  per_position = (1.0 - label_smoothing) * nll + label_smoothing * smooth
  w = weights.astype(jnp.float32)
  total = jnp.sum(per_position * w)
  count = jnp.sum(w)
  correct = (jnp.argmax(log_p, axis=-1) == targets).astype(jnp.float32)
  denom = jnp.maximum(count, 1.0)
  metrics = {"loss": total / denom, "nll": jnp.sum(nll * w) / denom,
             "accuracy": jnp.sum(correct * w) / denom, "tokens": count}
  return total, count, metrics
