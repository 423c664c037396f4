"""CTC loss against a numpy reference, greedy collapse, prefix beam search."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.finetune import ctc


def _ctc_nll_reference(log_probs, labels, blank=0):
  """-log P(labels | log_probs [T, V]) by the alpha recursion (Graves 2006), in numpy."""
  ext = [blank]
  for l in labels:
    ext += [l, blank]
  s_len, t_len = len(ext), log_probs.shape[0]
  alpha = np.full((t_len, s_len), -np.inf)
  alpha[0, 0] = log_probs[0, blank]
  if s_len > 1:
    alpha[0, 1] = log_probs[0, ext[1]]
  for t in range(1, t_len):
    for s in range(s_len):
      terms = [alpha[t - 1, s]]
      if s >= 1:
        terms.append(alpha[t - 1, s - 1])
      if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
        terms.append(alpha[t - 1, s - 2])
      alpha[t, s] = np.logaddexp.reduce(terms) + log_probs[t, ext[s]]
  return -np.logaddexp(alpha[-1, -1], alpha[-1, -2] if s_len > 1 else -np.inf)


def test_ctc_loss_matches_numpy_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 6, 5)).astype(np.float32)
  logit_valid = np.array([[1] * 6, [1] * 4 + [0] * 2], bool)
  labels = np.array([[1, 1, 3], [2, 4, 0]], np.int32)  # row 0 repeats a label
  label_valid = np.array([[1, 1, 1], [1, 1, 0]], bool)
  got = np.asarray(ctc.ctc_loss(jnp.asarray(logits), jnp.asarray(logit_valid),
                                jnp.asarray(labels), jnp.asarray(label_valid)))
  log_probs = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  want = [_ctc_nll_reference(log_probs[0], [1, 1, 3]),
          _ctc_nll_reference(log_probs[1, :4], [2, 4])]
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_ctc_loss_known_two_frame_case():
  # Two frames, one label 'a' (id 1): P = p(a,a) + p(a,-) + p(-,a).
  p = np.array([[0.6, 0.4], [0.6, 0.4]])
  got = ctc.ctc_loss(jnp.log(jnp.asarray(p))[None], jnp.ones((1, 2), bool),
                     jnp.array([[1]]), jnp.ones((1, 1), bool))
  assert float(got[0]) == pytest.approx(-math.log(0.4 * 0.4 + 0.4 * 0.6 + 0.6 * 0.4), rel=1e-5)


def test_greedy_collapses_repeats_then_blanks():
  ids = np.array([[0, 3, 3, 0, 3, 5, 5, 0, 0, 7]])
  assert ctc.greedy_decode(ids, np.ones_like(ids, bool)) == [[3, 3, 5, 7]]
  valid = np.array([[1, 1, 1, 1, 1, 1, 0, 0, 0, 0]], bool)  # padding frames are ignored
  assert ctc.greedy_decode(ids, valid) == [[3, 3, 5]]


def test_prefix_beam_search_beats_greedy_on_known_case():
  # Greedy picks blank twice -> ''; the label 'a' has total probability 0.64 > 0.36.
  log_probs = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
  assert ctc.greedy_decode(np.argmax(log_probs, -1)[None], np.ones((1, 2), bool)) == [[]]
  assert ctc.prefix_beam_search(log_probs, beam_size=4) == [1]


def test_prefix_beam_search_agrees_with_greedy_on_peaked_input():
  rng = np.random.default_rng(1)
  ids = rng.integers(0, 6, size=20)
  log_probs = np.log(np.full((20, 6), 0.01))
  log_probs[np.arange(20), ids] = np.log(0.95)
  greedy = ctc.greedy_decode(ids[None], np.ones((1, 20), bool))[0]
  assert ctc.prefix_beam_search(log_probs, beam_size=8) == greedy
