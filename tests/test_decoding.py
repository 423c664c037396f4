"""Greedy and beam search: known answers on a fixed-logits model, beam 1 == greedy, lengths."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax import decoding

# Vocabulary: 0 = BOS/PAD, 1 = EOS, 2 = "a", 3 = "b". A bigram model: the next token's
# probabilities depend only on the current input token.
_TINY = 1e-9
_TABLE = np.log(np.array([
    [_TINY, 0.1, 0.5, 0.4],    # after BOS
    [_TINY, 0.98, 0.01, 0.01],  # after EOS (never used)
    [_TINY, 0.3, 0.35, 0.35],  # after a
    [_TINY, 0.9, 0.05, 0.05],  # after b
]))


def _bigram_step(table):
  table = jnp.asarray(table, jnp.float32)

  def step_fn(tokens, step, state):
    del step
    return table[tokens], state + 1
  return step_fn


def test_beam_search_known_answer():
  step_fn = _bigram_step(_TABLE)
  state = jnp.zeros((1,), jnp.int32)
  tokens, scores = jax.jit(lambda s: decoding.beam_search(
      step_fn, s, jnp.array([4]), 6, beam_size=2, alpha=0.0))(state)
  # Worked by hand: step 0 keeps a (.5), b (.4); step 1's best extensions are b EOS (.36),
  # a a (.175), a b (.175), a EOS (.15): "b EOS" finishes; step 2: a b EOS (.1575) finishes and
  # beats both alive beams (.06125): search stops.
  np.testing.assert_array_equal(np.asarray(tokens[0]), [[3, 1, 0, 0, 0, 0], [2, 3, 1, 0, 0, 0]])
  np.testing.assert_allclose(np.asarray(scores[0]), [math.log(0.36), math.log(0.1575)],
                             rtol=1e-5)
  # Greedy follows a, a (tie broken to the lower id), a, then EOS forced at max length 4.
  greedy, score = decoding.greedy_decode(step_fn, state, jnp.array([4]), 6)
  np.testing.assert_array_equal(np.asarray(greedy[0]), [2, 2, 2, 1, 0, 0])
  np.testing.assert_allclose(float(score[0]), math.log(0.5 * 0.35 * 0.35 * 0.3), rtol=1e-5)


def test_length_penalty_prefers_longer_output():
  step_fn = _bigram_step(_TABLE)
  state = jnp.zeros((1,), jnp.int32)
  _, plain = decoding.beam_search(step_fn, state, jnp.array([4]), 6, beam_size=2, alpha=0.0)
  tokens, scores = decoding.beam_search(step_fn, state, jnp.array([4]), 6, beam_size=2,
                                        alpha=2.0)
  lp = lambda n: ((5.0 + n) / 6.0) ** 2.0
  # With alpha=2 the finished hypotheses are rescored by ((5 + length) / 6)^2.
  assert float(scores[0, 0]) == pytest.approx(max(math.log(0.36) / lp(2),
                                                  math.log(0.1575) / lp(3),
                                                  float(scores[0, 0])), rel=1e-6)
  assert float(scores[0, 0]) > float(plain[0, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed):
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(6, 6)) * 2.0
  step_fn = _bigram_step(table)
  state = jnp.zeros((5,), jnp.int32)
  max_lengths = jnp.array([1, 3, 5, 7, 8])
  greedy, greedy_score = decoding.greedy_decode(step_fn, state, max_lengths, 8)
  beam, beam_score = decoding.beam_search(step_fn, state, max_lengths, 8, beam_size=1, alpha=0.0)
  np.testing.assert_array_equal(np.asarray(beam[:, 0]), np.asarray(greedy))
  np.testing.assert_allclose(np.asarray(beam_score[:, 0]), np.asarray(greedy_score), rtol=1e-5)


def test_max_lengths_and_row_independence():
  rng = np.random.default_rng(3)
  table = rng.normal(size=(6, 6))
  table[:, 1] = -5.0  # EOS unlikely: outputs run to their maximum length.
  step_fn = _bigram_step(table)
  max_lengths = decoding.max_decode_lengths(jnp.array([2, 10, 40]), 0.5, 1.0, 8)
  np.testing.assert_array_equal(np.asarray(max_lengths), [2, 6, 8])
  tokens, _ = decoding.beam_search(step_fn, jnp.zeros((3,), jnp.int32), max_lengths, 8, 3)
  lengths = np.argmax(np.asarray(tokens[:, 0]) == 1, axis=-1) + 1
  np.testing.assert_array_equal(lengths, [2, 6, 8])
  # Each row decodes as it would alone.
  for row in range(3):
    alone, _ = decoding.beam_search(step_fn, jnp.zeros((1,), jnp.int32), max_lengths[row:row + 1],
                                    8, 3)
    np.testing.assert_array_equal(np.asarray(alone[0]), np.asarray(tokens[row]))
