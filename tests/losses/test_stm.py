"""STM: binary cross-entropy known answer and the in-batch negatives."""

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


def _transcripts(rows, length=6, seed=0, vocab=50):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(3, vocab, (rows, length)).astype(np.int32)
  segments = np.ones((rows, length), np.int32)
  segments[:, -1] = 0
  tokens[:, -1] = 0
  return tokens, segments


def _sample(kind, tokens, segments, seed, mode="random", **kw):
  swap = jax.jit(stm.sample_negatives, static_argnames=("mode",))(
      jax.random.key(seed), jnp.asarray(np.asarray(kind) == types.KIND_PAIRED),
      jnp.asarray(tokens), jnp.asarray(segments), mode=mode, **kw)
  return np.asarray(swap.source), np.asarray(swap.swapped)


def test_negatives_are_other_paired_rows_with_a_different_transcript():
  kind = np.array([2, 0, 2, 1, 2, 2, 2, 0, 2, 2], np.int32)
  paired = kind == types.KIND_PAIRED
  tokens, segments = _transcripts(len(kind))
  tokens[5] = tokens[2]  # rows 2 and 5: the same transcript (never each other's negative)
  partners = set()
  for seed in range(20):
    for mode in stm.NEGATIVES:
      src, swapped = _sample(kind, tokens, segments, seed, mode)
      assert swapped.sum() == paired.sum() // 2 and not swapped[~paired].any()
      np.testing.assert_array_equal(src[~swapped], np.flatnonzero(~swapped))
      rows = np.flatnonzero(swapped)
      assert np.all(paired[src[rows]]) and np.all(src[rows] != rows)
      assert all(not np.array_equal(tokens[r], tokens[src[r]]) for r in rows)
      partners |= {(int(r), int(src[r])) for r in rows}
  # Random partners: not a fixed "next row" (row 0 meets several others over the seeds).
  assert len({p for r, p in partners if r == 0}) >= 3


def test_rows_without_a_candidate_stay_matched():
  tokens, segments = _transcripts(4)
  for kind in ([0, 1, 0, 1], [0, 2, 1, 0]):
    src, swapped = _sample(kind, tokens, segments, 0)
    assert not swapped.any()
    np.testing.assert_array_equal(src, np.arange(4))
  same = np.repeat(tokens[:1], 4, axis=0)  # four paired rows, one transcript
  src, swapped = _sample([2, 2, 2, 2], same, segments, 0)
  assert not swapped.any()
  # Segments count too: the same tokens packed differently are different transcripts.
  seg2 = segments.copy()
  seg2[1, 2:-1] = 2
  _, swapped = _sample([2, 2, 0, 0], same, seg2, 0)
  assert swapped.sum() == 1


def test_hard_negatives_prefer_the_most_similar_transcript():
  tokens, segments = _transcripts(6, seed=1)
  tokens[3, :4] = tokens[0, :4]  # row 3 shares 4 of 5 tokens with row 0
  kind = [2] * 6
  hits = 0
  for seed in range(20):
    src, swapped = _sample(kind, tokens, segments, seed, "hard", hard_temperature=0.01)
    if swapped[0]:
      hits += 1
      assert src[0] == 3
  assert hits > 0
  same = stm.transcript_hash(jnp.asarray(tokens[[0, 0]]), jnp.asarray(segments[[0, 0]]))
  assert int(same[0]) == int(same[1])
