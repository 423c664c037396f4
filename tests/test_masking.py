"""Tests for slam_jax.masking: speech spans (wav2vec 2.0) and SpanBERT text masking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax import masking

VOCAB = 100
MASK_ID = VOCAB - 1


def _lengths_to_valid(lengths, frames):
  return jnp.arange(frames)[None, :] < jnp.asarray(lengths)[:, None]


def test_speech_mask_starts_at_least_two_spans():
  """wav2vec 2.0 (fairseq mask_min_masks=2): with M = 1 the mask is the set of starts, so a tiny
  start probability leaves exactly min(2, real frames) masked frames."""
  cfg = masking.SpeechMaskConfig(start_prob=1e-7, span_length=1)
  valid = _lengths_to_valid([0, 1, 2, 3, 40, 200], 200)
  for seed in range(10):
    mask = np.asarray(masking.speech_span_mask(jax.random.key(seed), valid, cfg))
    np.testing.assert_array_equal(mask.sum(1), [0, 1, 2, 2, 2, 2])
  cfg3 = masking.SpeechMaskConfig(start_prob=1e-7, span_length=1, min_spans=3)
  mask = np.asarray(masking.speech_span_mask(jax.random.key(0), valid, cfg3))
  np.testing.assert_array_equal(mask.sum(1), [0, 1, 2, 3, 3, 3])


def test_speech_mask_never_masks_padding_and_always_has_a_span():
  cfg = masking.SpeechMaskConfig(start_prob=0.01, span_length=10)  # low p: forcing matters
  valid = _lengths_to_valid([0, 1, 3, 40, 200], 200)
  for seed in range(20):
    mask = np.asarray(masking.speech_span_mask(jax.random.key(seed), valid, cfg))
    assert not np.any(mask & ~np.asarray(valid))
    assert not mask[0].any()  # empty row stays empty
    assert np.all(mask[1:].sum(axis=1) >= 1)


def test_speech_mask_spans_are_contiguous_runs_of_m():
  cfg = masking.SpeechMaskConfig(start_prob=0.002, span_length=7)
  valid = jnp.ones((64, 300), bool)
  mask = np.asarray(masking.speech_span_mask(jax.random.key(1), valid, cfg))
  # Every run not cut by the utterance end is at least M long.
  for row in mask:
    padded = np.concatenate([[0], row.astype(int), [0]])
    starts = np.flatnonzero(np.diff(padded) == 1)
    ends = np.flatnonzero(np.diff(padded) == -1)
    for s, e in zip(starts, ends):
      if e < 300:
        assert e - s >= 7  # overlapping spans only make runs longer


def test_speech_mask_ratio_and_determinism():
  cfg = masking.SpeechMaskConfig()  # p = 0.065, M = 10
  valid = jnp.ones((32, 2000), bool)
  a = masking.speech_span_mask(jax.random.key(3), valid, cfg)
  b = masking.speech_span_mask(jax.random.key(3), valid, cfg)
  c = masking.speech_span_mask(jax.random.key(4), valid, cfg)
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))
  ratio = float(jnp.mean(a))
  assert abs(ratio - cfg.expected_ratio) < 0.02, ratio  # ~0.49 (wav2vec 2.0: "about 49%")


def test_speech_mask_jits():
  cfg = masking.SpeechMaskConfig()
  valid = _lengths_to_valid([5, 9], 12)
  fn = jax.jit(lambda k, v: masking.speech_span_mask(k, v, cfg))
  np.testing.assert_array_equal(fn(jax.random.key(0), valid),
                                masking.speech_span_mask(jax.random.key(0), valid, cfg))


def _text_batch(batch=64, length=128, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(2, MASK_ID, size=(batch, length)).astype(np.int32)
  segs = np.ones((batch, length), np.int32)
  lengths = rng.integers(0, length + 1, size=batch)
  lengths[0], lengths[1] = 0, 1
  for i, n in enumerate(lengths):
    tokens[i, n:] = 0
    segs[i, n:] = 0
    if n > 0:
      tokens[i, n - 1] = masking.EOS_ID
    if n > 10:  # a packed second example
      tokens[i, n // 2] = masking.EOS_ID
      segs[i, n // 2 + 1:n] = 2
  return jnp.asarray(tokens), jnp.asarray(segs)


def test_text_mask_never_touches_padding_or_special_ids():
  cfg = masking.TextMaskConfig()
  tokens, segs = _text_batch()
  maskable = masking.text_maskable(tokens, segs)
  for seed in range(5):
    out = masking.text_span_mask(jax.random.key(seed), tokens, maskable, cfg, vocab_size=VOCAB,
                                 mask_id=MASK_ID)
    mask, inputs = np.asarray(out.mask), np.asarray(out.inputs)
    special = (np.asarray(tokens) <= masking.EOS_ID) | (np.asarray(segs) == 0)
    assert not np.any(mask & special)
    np.testing.assert_array_equal(inputs[~mask], np.asarray(tokens)[~mask])
    # Random replacements never produce specials.
    assert not np.any((inputs[mask] <= masking.EOS_ID))


def test_text_mask_budget_exact_and_spans_geometric():
  cfg = masking.TextMaskConfig()
  tokens, segs = _text_batch(batch=256, length=256, seed=1)
  maskable = masking.text_maskable(tokens, segs)
  out = masking.text_span_mask(jax.random.key(0), tokens, maskable, cfg, vocab_size=VOCAB,
                               mask_id=MASK_ID)
  n = np.asarray(maskable).sum(1)
  rounded = np.round(np.float32(0.15) * n.astype(np.float32))  # float32, as the masking computes
  expected = np.where(n > 0, np.maximum(rounded, 1), 0)
  np.testing.assert_array_equal(np.asarray(out.mask).sum(1), expected)
  # Span lengths over rows without packing breaks: mean of truncated Geo(0.2) is 3.8, max 10
  # (the last span of a row is cut to meet the budget, which lowers the mean slightly).
  runs = []
  for row_mask, row_ok in zip(np.asarray(out.mask), np.asarray(maskable)):
    compressed = row_mask[row_ok].astype(int)
    padded = np.concatenate([[0], compressed, [0]])
    d = np.diff(padded)
    runs += list(np.flatnonzero(d == -1) - np.flatnonzero(d == 1))
  runs = np.array(runs)
  assert runs.max() <= 10
  assert 3.0 < runs.mean() < 4.0, runs.mean()


def test_text_span_lengths_follow_the_truncated_geometric():
  """Chi-square of the span lengths against Geo(0.2) restricted to 1..10 (SpanBERT). Spans never
  touch, so each run of masked tokens is one span; the last span of a row (cut to meet the
  budget) is left out."""
  cfg = masking.TextMaskConfig()
  tokens = jnp.full((64, 1000), 5, jnp.int32)
  maskable = jnp.ones_like(tokens, bool)
  out = masking.text_span_mask(jax.random.key(2), tokens, maskable, cfg, vocab_size=VOCAB,
                               mask_id=MASK_ID)
  lengths = []
  for row in np.asarray(out.mask):
    d = np.diff(np.concatenate([[0], row.astype(int), [0]]))
    runs = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
    lengths += list(runs[:-1])
  lengths = np.array(lengths)
  k = np.arange(1, 11)
  p = 0.2 * 0.8 ** (k - 1)
  p /= p.sum()
  observed = np.bincount(lengths, minlength=11)[1:]
  expected = p * len(lengths)
  chi2 = np.sum((observed - expected) ** 2 / expected)
  assert len(lengths) > 1500
  assert chi2 < 27.9, (chi2, observed, expected.round())  # 9 dof, p = 0.001
  # An untruncated geometric or a fixed length fails it by far.
  assert np.sum((observed - len(lengths) / 10) ** 2 / (len(lengths) / 10)) > 100


def test_one_80_10_10_action_per_span_and_random_ids_are_real_pieces():
  """Every token of a span gets the same action; random tokens come from `random_ids` only
  (never PAD/EOS/UNK, the mask id or unused extra ids)."""
  cfg = masking.TextMaskConfig()
  tokens = jnp.full((64, 400), 90, jnp.int32)  # 90 lies outside random_ids: never drawn
  maskable = jnp.ones_like(tokens, bool)
  out = masking.text_span_mask(jax.random.key(4), tokens, maskable, cfg, vocab_size=VOCAB,
                               mask_id=MASK_ID, random_ids=(3, 80))
  inputs, mask = np.asarray(out.inputs), np.asarray(out.mask)
  action = np.where(inputs == MASK_ID, 0, np.where(inputs == 90, 2, 1))  # mask / random / keep
  counts = np.zeros(3)
  for row_in, row_mask, row_action in zip(inputs, mask, action):
    d = np.diff(np.concatenate([[0], row_mask.astype(int), [0]]))
    for start, end in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
      assert len(set(row_action[start:end])) == 1, row_action[start:end]
      counts[row_action[start]] += 1
      if row_action[start] == 1:
        assert np.all((row_in[start:end] >= 3) & (row_in[start:end] < 80))
  frac = counts / counts.sum()
  assert abs(frac[0] - 0.8) < 0.04 and abs(frac[1] - 0.1) < 0.03, frac
  assert not np.any(inputs[~mask] != 90)
  with pytest.raises(ValueError, match="random_ids"):
    masking.text_span_mask(jax.random.key(0), tokens, maskable, cfg, vocab_size=VOCAB,
                           mask_id=MASK_ID, random_ids=(3, 3))


class _Vocab:
  """A seqio-like vocabulary: 10 pieces (ids 0-9), then 2 extra ids."""

  vocab_size, extra_ids = 12, 2

  def decode(self, ids):
    return f"piece{ids[0]}"


def test_check_mask_id_against_the_vocabulary():
  assert masking.check_mask_id(_Vocab(), mask_id=10, vocab_size=12) == 10
  with pytest.raises(ValueError, match="real SentencePiece piece 'piece9'"):
    masking.check_mask_id(_Vocab(), mask_id=9, vocab_size=12)
  with pytest.raises(ValueError, match="embedding rows"):
    masking.check_mask_id(_Vocab(), mask_id=10, vocab_size=11)


def test_text_mask_80_10_10_and_determinism():
  cfg = masking.TextMaskConfig()
  tokens, segs = _text_batch(batch=512, length=128, seed=2)
  maskable = masking.text_maskable(tokens, segs)
  fn = jax.jit(lambda k: masking.text_span_mask(k, tokens, maskable, cfg, vocab_size=VOCAB,
                                                mask_id=MASK_ID))
  out, again = fn(jax.random.key(7)), fn(jax.random.key(7))
  np.testing.assert_array_equal(out.inputs, again.inputs)
  np.testing.assert_array_equal(out.mask, again.mask)
  mask = np.asarray(out.mask)
  inputs, tok = np.asarray(out.inputs)[mask], np.asarray(tokens)[mask]
  frac_mask = np.mean(inputs == MASK_ID)
  frac_keep = np.mean(inputs == tok)
  frac_random = 1 - frac_mask - frac_keep
  # Decided per span (not per token), so allow for span-level sampling noise.
  assert abs(frac_mask - 0.8) < 0.04, frac_mask
  assert abs(frac_keep - 0.1) < 0.03, frac_keep
  assert abs(frac_random - 0.1) < 0.03, frac_random


def test_text_mask_rejects_bad_mask_id():
  tokens, segs = _text_batch(batch=2, length=8)
  with pytest.raises(ValueError, match="mask_id"):
    masking.text_span_mask(jax.random.key(0), tokens, masking.text_maskable(tokens, segs),
                           masking.TextMaskConfig(), vocab_size=VOCAB, mask_id=VOCAB)


@pytest.mark.parametrize("rate", [0.5, 0.15])
def test_text_mask_budget_exact_on_short_rows(rate):
  cfg = masking.TextMaskConfig(mask_rate=rate)
  tokens, segs = _text_batch(batch=128, length=12, seed=5)
  maskable = masking.text_maskable(tokens, segs)
  out = masking.text_span_mask(jax.random.key(1), tokens, maskable, cfg, vocab_size=VOCAB,
                               mask_id=MASK_ID)
  n = np.asarray(maskable).sum(1)
  rounded = np.round(np.float32(rate) * n.astype(np.float32))
  np.testing.assert_array_equal(np.asarray(out.mask).sum(1), np.where(n > 0,
                                                                      np.maximum(rounded, 1), 0))
  mask = np.asarray(out.mask)
  assert not np.any(mask & ~np.asarray(maskable))
