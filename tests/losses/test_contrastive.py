"""Known-answer and property tests of the wav2vec 2.0 / w2v-BERT contrastive loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.losses import contrastive


def _reference(context, quantized, ids, mask, idx, valid, kappa):
  """Direct numpy transcription of wav2vec 2.0 Eq. 3 with identical-target distractors removed."""
  cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
  losses, correct = [], []
  for b in range(context.shape[0]):
    for t in range(context.shape[1]):
      if not mask[b, t] or not valid[b, t].any():
        continue
      pos = cos(context[b, t], quantized[b, t]) / kappa
      negs = [cos(context[b, t], quantized[b, s]) / kappa
              for s, ok in zip(idx[b, t], valid[b, t]) if ok and not np.all(ids[b, s] == ids[b, t])]
      logits = np.array([pos] + negs)
      losses.append(np.log(np.sum(np.exp(logits))) - pos)
      correct.append(float(np.argmax(logits) == 0))
  return np.mean(losses), np.mean(correct), len(losses)


def _example():
  rng = np.random.default_rng(0)
  b, t, d = 2, 5, 4
  context = rng.standard_normal((b, t, d)).astype(np.float32)
  quantized = rng.standard_normal((b, t, d)).astype(np.float32)
  ids = np.arange(b * t).reshape(b, t, 1).astype(np.int32)
  # Frame (0, 3) has the same code (and vector) as target (0, 1): excluded as its distractor.
  quantized[0, 3] = quantized[0, 1]
  ids[0, 3] = ids[0, 1]
  mask = np.array([[1, 1, 0, 1, 1], [0, 1, 1, 0, 0]], bool)
  idx = np.array([[[1, 3, 4], [3, 4, 0], [0, 0, 0], [0, 1, 4], [0, 1, 3]],
                  [[0, 0, 0], [2, 2, 2], [1, 1, 1], [0, 0, 0], [0, 0, 0]]], np.int32)
  valid = mask[..., None] & np.ones((1, 1, 3), bool)
  valid[0, 0, 2] = False  # an absent distractor slot
  return context, quantized, ids, mask, idx, valid


def test_contrastive_matches_numpy_reference():
  context, quantized, ids, mask, idx, valid = _example()
  loss, metrics = contrastive.contrastive_loss(
      jnp.asarray(context), jnp.asarray(quantized), jnp.asarray(ids), jnp.asarray(mask),
      contrastive.Distractors(jnp.asarray(idx), jnp.asarray(valid)), temperature=0.1)
  ref_loss, ref_acc, ref_count = _reference(context, quantized, ids, mask, idx, valid, 0.1)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], ref_acc)
  assert float(metrics["count"]) == ref_count == 6


def test_contrastive_empty_is_zero_and_gradients_stay_on_scored_frames():
  context, quantized, ids, mask, idx, valid = _example()
  d = contrastive.Distractors(jnp.asarray(idx), jnp.asarray(valid))
  zero_mask = jnp.zeros(mask.shape, bool)
  loss, metrics = contrastive.contrastive_loss(jnp.asarray(context), jnp.asarray(quantized),
                                               jnp.asarray(ids), zero_mask, d)
  assert float(loss) == 0.0 and float(metrics["count"]) == 0.0

  # Padding-like zero vectors stay finite; context gradients vanish off the scored frames.
  context[1, 4] = 0.0
  quantized[1, 4] = 0.0
  grad = jax.grad(lambda c, q: contrastive.contrastive_loss(
      c, q, jnp.asarray(ids), jnp.asarray(mask), d)[0], argnums=(0, 1))(
          jnp.asarray(context), jnp.asarray(quantized))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad)
  gc = np.asarray(grad[0])
  assert np.all(gc[~mask] == 0.0)
  assert np.all(np.abs(gc[mask]).sum(-1) > 0)
  # Quantized vectors get gradients (the loss trains the quantizer) only where they are used.
  used = np.zeros(mask.shape, bool)
  used[mask] = True
  for b, t in zip(*np.nonzero(mask)):
    used[b, idx[b, t][valid[b, t]]] = True
  assert np.all(np.asarray(grad[1])[~used] == 0.0)


def test_sample_distractors_draws_other_masked_frames_of_the_same_row():
  mask = jnp.asarray(np.array([[1, 0, 1, 1, 0, 1, 0, 0],
                               [0, 0, 0, 1, 0, 0, 0, 0],
                               [1] * 8], bool))
  d = contrastive.sample_distractors(jax.random.key(0), mask, num_distractors=200)
  idx, valid = np.asarray(d.indices), np.asarray(d.valid)
  m = np.asarray(mask)
  assert not valid[1].any()  # a single masked frame has no distractor
  assert not valid[0][~m[0]].any()
  for t in np.flatnonzero(m[0]):
    drawn = idx[0, t][valid[0, t]]
    assert set(drawn) == set(np.flatnonzero(m[0])) - {t}  # all others, never itself
  counts = np.bincount(idx[2, 0], minlength=8)  # ~uniform over the 7 others (200 / 7 each)
  assert counts[0] == 0 and counts[1:].min() > 10
  again = contrastive.sample_distractors(jax.random.key(0), mask, num_distractors=200)
  np.testing.assert_array_equal(idx, again.indices)


def test_contrastive_shape_errors():
  x = jnp.zeros((2, 3, 4))
  d = contrastive.Distractors(jnp.zeros((2, 3, 1), jnp.int32), jnp.zeros((2, 3, 1), bool))
  with pytest.raises(ValueError, match="quantized"):
    contrastive.contrastive_loss(x, jnp.zeros((2, 3, 5)), jnp.zeros((2, 3, 1), jnp.int32),
                                 jnp.zeros((2, 3), bool), d)
