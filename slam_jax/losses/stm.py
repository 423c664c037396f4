"""Speech-text matching (STM; SLAM, after ALBEF's image-text matching, arXiv 2107.07651).

A binary classifier on the pooled shared-stack output of a paired row decides whether its speech and
transcript match. Negatives are built inside the batch in the same forward pass: half of the paired
rows (chosen by the key) take the transcript of the next paired row (a roll among the paired rows).
A row whose borrowed transcript happens to equal its own (a batch with a single paired row, or
duplicate transcripts) is labelled as matched.
"""

from typing import Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from slam_jax.losses import reduce


class TranscriptSwap(NamedTuple):
  """Attributes:
    source: int32 [B] row whose transcript row b uses (b itself when not swapped).
    swapped: bool [B] rows given another paired row's transcript.
  """

  source: jnp.ndarray
  swapped: jnp.ndarray


def roll_transcripts(key: jax.Array, is_paired: jnp.ndarray) -> TranscriptSwap:
  """Chooses floor(n/2) of the n paired rows and gives each the transcript of the next paired row.

  Args:
    key: PRNG key.
    is_paired: bool [B].

  Returns:
    `TranscriptSwap`; non-paired rows always keep their own text.
  """
  reduce.check_shape("is_paired", is_paired, (None,))
  is_paired = is_paired.astype(bool)
  batch = is_paired.shape[0]
  rows = jnp.arange(batch, dtype=jnp.int32)
  n = jnp.sum(is_paired).astype(jnp.int32)
  order = jnp.argsort(~is_paired, stable=True).astype(jnp.int32)  # paired rows first, in order
  position = jnp.zeros((batch,), jnp.int32).at[order].set(rows)  # index of row b in `order`
  next_paired = order[jnp.where(n > 0, (position + 1) % jnp.maximum(n, 1), 0)]
  # A random half of the paired rows: the floor(n/2) smallest random keys.
  noise = jnp.where(is_paired, jax.random.uniform(key, (batch,)), 2.0)
  noise_rank = jnp.zeros((batch,), jnp.int32).at[jnp.argsort(noise)].set(rows)
  swapped = is_paired & (noise_rank < n // 2)
  source = jnp.where(swapped, next_paired, rows)
  return TranscriptSwap(source=source, swapped=swapped)


def stm_loss(logits: jnp.ndarray, labels: jnp.ndarray,
             weights: jnp.ndarray) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Sigmoid binary cross-entropy of match logits.

  Args:
    logits: [B] match logits.
    labels: [B] 1 = matched, 0 = mismatched.
    weights: [B] rows to score (the paired rows).

  Returns:
    (mean over scored rows, metrics {loss, accuracy, count, positive_fraction}).
  """
  reduce.check_shape("logits", logits, (None,))
  reduce.check_shape("labels", labels, logits.shape)
  reduce.check_shape("weights", weights, logits.shape)
  x = logits.astype(jnp.float32)
  y = labels.astype(jnp.float32)
  per_row = y * jax.nn.softplus(-x) + (1.0 - y) * jax.nn.softplus(x)
  correct = ((x > 0).astype(jnp.float32) == y).astype(jnp.float32)
  loss, count = reduce.weighted_mean(per_row, weights)
  accuracy, _ = reduce.weighted_mean(correct, weights)
  positive, _ = reduce.weighted_mean(y, weights)
  return loss, {"loss": loss, "accuracy": accuracy, "count": count, "positive_fraction": positive}
