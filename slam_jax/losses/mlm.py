"""Masked prediction losses: speech (w2v-BERT's masked prediction of quantizer ids) and text
(BERT / SpanBERT masked language modelling). Cross-entropy at masked positions only."""

from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from slam_jax.losses import reduce


def masked_cross_entropy(logits: jnp.ndarray, targets: jnp.ndarray, weights: jnp.ndarray,
                         normaliser=None) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Mean cross-entropy and accuracy over positions with nonzero weight.

  Args:
    logits: [..., V].
    targets: int [...] (the logits' leading shape).
    weights: [...] same shape as targets.
    normaliser: divides the sums (default: the weights' sum; see `reduce.weighted_mean`).

  Returns:
    (mean loss, accuracy, count).
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  per_position = log_z - target_logit
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  loss, count = reduce.weighted_mean(per_position, weights, normaliser)
  accuracy, _ = reduce.weighted_mean(correct, weights, normaliser)
  return loss, accuracy, count


def speech_mlm_loss(logits: jnp.ndarray, ids: jnp.ndarray, mask: jnp.ndarray,
                    normaliser=None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Predicts each group's code id at masked frames.

  Args:
    logits: [B, T, G, V] speech MLM head output.
    ids: int [B, T, G] quantizer code ids (targets; integer, so no gradient flows into them).
    mask: bool [B, T] frames to score.
    normaliser: frames the sums are divided by (default: the scored frames).

  Returns:
    (mean over scored frames and groups, metrics {loss, accuracy, count}); count is in frames.
  """
  reduce.check_shape("logits", logits, (None, None, None, None))
  b, t, g, _ = logits.shape
  reduce.check_shape("ids", ids, (b, t, g))
  reduce.check_shape("mask", mask, (b, t))
  weights = jnp.broadcast_to(mask.astype(jnp.float32)[..., None], (b, t, g))
  norm = None if normaliser is None else normaliser * g
  loss, accuracy, _ = masked_cross_entropy(logits, ids, weights, norm)
  count = jnp.sum(mask.astype(jnp.float32))
  return loss, {"loss": loss, "accuracy": accuracy, "count": count}


def text_mlm_loss(logits: jnp.ndarray, targets: jnp.ndarray, mask: jnp.ndarray,
                  normaliser=None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Predicts the original tokens at masked positions.

  Args:
    logits: [B, L, V] text MLM head output.
    targets: int [B, L] original (unmasked) tokens.
    mask: bool [B, L] positions to score.
    normaliser: tokens the sums are divided by (default: the scored tokens).

  Returns:
    (mean over scored tokens, metrics {loss, accuracy, count}).
  """
  reduce.check_shape("logits", logits, (None, None, None))
  b, l, _ = logits.shape
  reduce.check_shape("targets", targets, (b, l))
  reduce.check_shape("mask", mask, (b, l))
  loss, accuracy, count = masked_cross_entropy(logits, targets, mask, normaliser)
  return loss, {"loss": loss, "accuracy": accuracy, "count": count}
