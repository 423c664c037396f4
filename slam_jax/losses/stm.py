"""Speech-text matching (STM; SLAM, after ALBEF's image-text matching, arXiv 2107.07651).

A binary classifier on the pooled shared-stack output of a paired row decides whether its speech and
transcript match. Negatives come from the batch: half of the paired rows (chosen by the key) are
given another paired row's transcript, never their own and never an identical one (transcripts are
compared by a hash of their tokens and segments; a collision only removes a candidate). The partner
is drawn

  random  uniformly among the candidates;
  hard    in proportion to exp(cosine(bag of tokens) / temperature): transcripts sharing many
          tokens with the row's own (ALBEF samples hard negatives by similarity; it uses its
          contrastive scores, which SLAM has no counterpart of, so the similarity here is lexical).

A paired row with no candidate (the only paired row, or all others carry the same transcript) stays
matched. The partner is drawn once for the whole batch, so microbatches see the same negatives.
"""

from typing import Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.losses import reduce

NEGATIVES = ("random", "hard")
_HASH_BUCKETS = 1024  # bag-of-tokens buckets for the hard-negative similarity
_HASH_BASE = 0x9E3779B1


class TranscriptSwap(NamedTuple):
  """Attributes:
    source: int32 [B] row whose transcript row b uses (b itself when not swapped).
    swapped: bool [B] rows given another paired row's transcript.
  """

  source: jnp.ndarray
  swapped: jnp.ndarray


def transcript_hash(tokens: jnp.ndarray, segment_ids: jnp.ndarray) -> jnp.ndarray:
  """uint32 [B] polynomial hash of each row's (token, segment) sequence (padding ignored)."""
  reduce.check_shape("tokens", tokens, (None, None))
  length = tokens.shape[1]
  powers = np.array([pow(_HASH_BASE, i + 1, 2 ** 32) for i in range(length)], np.uint32)
  value = (tokens.astype(jnp.uint32) + 1) + jnp.uint32(65599) * segment_ids.astype(jnp.uint32)
  value = jnp.where(segment_ids > 0, value, jnp.uint32(0))
  return jnp.sum(value * jnp.asarray(powers)[None, :], axis=1, dtype=jnp.uint32)


def _bag_similarity(tokens: jnp.ndarray, segment_ids: jnp.ndarray) -> jnp.ndarray:
  """float32 [B, B] cosine similarity of hashed bags of tokens."""
  batch = tokens.shape[0]
  rows = jnp.broadcast_to(jnp.arange(batch)[:, None], tokens.shape)
  counts = jnp.zeros((batch, _HASH_BUCKETS), jnp.float32).at[
      rows, tokens % _HASH_BUCKETS].add((segment_ids > 0).astype(jnp.float32))
  counts = counts * jax.lax.rsqrt(jnp.maximum(jnp.sum(counts * counts, 1, keepdims=True), 1e-9))
  return counts @ counts.T


def sample_negatives(key: jax.Array, is_paired: jnp.ndarray, tokens: jnp.ndarray,
                     segment_ids: jnp.ndarray, mode: str = "random",
                     hard_temperature: float = 0.1) -> TranscriptSwap:
  """Gives floor(n/2) of the n paired rows that have a candidate another row's transcript.

  Args:
    key: PRNG key.
    is_paired: bool [B].
    tokens, segment_ids: int [B, L] the rows' own transcripts.
    mode: 'random' or 'hard' (see the module docstring).
    hard_temperature: temperature of the hard-negative sampling.

  Returns:
    `TranscriptSwap`; non-paired rows always keep their own text.
  """
  reduce.check_shape("is_paired", is_paired, (None,))
  batch = is_paired.shape[0]
  reduce.check_shape("tokens", tokens, (batch, None))
  reduce.check_shape("segment_ids", segment_ids, tokens.shape)
  if mode not in NEGATIVES:
    raise ValueError(f"STM negatives {mode!r} unknown; choose one of {NEGATIVES}")
  is_paired = is_paired.astype(bool)
  pick_key, partner_key = jax.random.split(key)
  h = transcript_hash(tokens, segment_ids)
  candidate = is_paired[:, None] & is_paired[None, :] & (h[:, None] != h[None, :])  # [B, B]
  eligible = jnp.any(candidate, axis=1)
  # A random half of the eligible rows: the floor(n/2) smallest random keys.
  rows = jnp.arange(batch, dtype=jnp.int32)
  n = jnp.sum(eligible).astype(jnp.int32)
  noise = jnp.where(eligible, jax.random.uniform(pick_key, (batch,)), 2.0)
  noise_rank = jnp.zeros((batch,), jnp.int32).at[jnp.argsort(noise)].set(rows)
  swapped = eligible & (noise_rank < n // 2)
  if mode == "random":
    scores = jnp.zeros((batch, batch), jnp.float32)
  else:
    scores = _bag_similarity(tokens, segment_ids) / hard_temperature
  scores = jnp.where(candidate, scores, -jnp.inf)
  partner = jax.random.categorical(partner_key, jnp.where(eligible[:, None], scores, 0.0), axis=1)
  source = jnp.where(swapped, partner.astype(jnp.int32), rows)
  return TranscriptSwap(source=source, swapped=swapped)


def stm_loss(logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray,
             normaliser=None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Sigmoid binary cross-entropy of match logits.

  Args:
    logits: [B] match logits.
    labels: [B] 1 = matched, 0 = mismatched.
    weights: [B] rows to score (the paired rows).
    normaliser: what the sums are divided by (default: the number of scored rows); see
      `reduce.weighted_mean`.

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
  loss, count = reduce.weighted_mean(per_row, weights, normaliser)
  accuracy, _ = reduce.weighted_mean(correct, weights, normaliser)
  positive, _ = reduce.weighted_mean(y, weights, normaliser)
  return loss, {"loss": loss, "accuracy": accuracy, "count": count, "positive_fraction": positive}
