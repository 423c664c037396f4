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


def test_min_frames_counts_a_blank_between_equal_neighbours():
  labels = jnp.array([[2, 2, 3, 3, 3], [4, 5, 4, 0, 0], [6, 6, 0, 0, 0]])
  valid = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
  assert ctc.min_frames(labels, valid).tolist() == [5 + 3, 3, 1]


def test_infeasible_utterances_are_left_out_and_counted():
  """A transcript longer than its frames has no alignment: without care optax's huge loss for it
  swamps the batch (the demo's step 325 read 125 instead of ~2.8)."""
  import jax  # pylint: disable=g-import-not-at-top
  from slam_jax import partitioning  # pylint: disable=g-import-not-at-top
  from slam_jax import types  # pylint: disable=g-import-not-at-top
  from slam_jax.models import encoder as encoder_lib  # pylint: disable=g-import-not-at-top

  class Vocab:
    vocab_size = 8

  model = ctc.CtcAsrModel(encoder_lib.get_preset("tiny", dropout_rate=0.0), Vocab())
  rng = np.random.default_rng(0)
  frames = 16  # 4 encoder frames after 4x subsampling
  labels = np.array([[2, 3, 1, 0, 0, 0, 0], [2, 3, 4, 5, 6, 7, 1]], np.int32)  # 2 and 6 targets
  batch = {
      types.SPEECH_FEATURES: rng.normal(size=(2, frames, 80)).astype(np.float32),
      types.SPEECH_MASK: np.ones((2, frames), np.int32),
      types.TEXT_TOKENS: labels, types.TEXT_SEGMENT_IDS: (labels > 0).astype(np.int32),
      types.TEXT_POSITIONS: np.tile(np.arange(7, dtype=np.int32), (2, 1)),
      types.KIND: np.full((2,), types.KIND_PAIRED, np.int32)}
  params = partitioning.unbox(model.init(jax.random.PRNGKey(0), batch))
  loss, metrics = model.loss_fn(params, batch, None)
  alone, _ = model.loss_fn(params, {k: v[:1] for k, v in batch.items()}, None)
  assert float(metrics["ctc/infeasible"]) == 1.0
  np.testing.assert_allclose(float(loss), float(alone), rtol=1e-6)
  assert float(loss) < 10
