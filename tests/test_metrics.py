"""Known-answer tests of slam_jax.metrics."""
import numpy as np
import pytest

from slam_jax import metrics


def _edit_distance(a, b):
  d = np.arange(len(b) + 1)
  for i, x in enumerate(a, 1):
    prev, d[0] = d[0], i
    for j, y in enumerate(b, 1):
      prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
  return d[-1]


def test_wer_known_answer():
  # 1 substitution + 1 deletion over 4 words, 1 insertion over 2 words: 3 errors / 6 words.
  targets = ["the cat sat down", "hello world"]
  predictions = ["the dog sat", "hello big world"]
  assert metrics.wer(targets, predictions)["wer"] == pytest.approx(50.0)
  errors = sum(_edit_distance(t.split(), p.split()) for t, p in zip(targets, predictions))
  assert errors == 3


def test_wer_perfect_and_empty_reference():
  assert metrics.wer(["a b"], ["a b"])["wer"] == 0.0
  with pytest.raises(ValueError, match="empty"):
    metrics.wer(["a b", ""], ["a b", "c"])
  with pytest.raises(ValueError, match="predictions"):
    metrics.wer(["a"], [])


def test_accuracy():
  assert metrics.accuracy(["x", "y", "y", "z"], ["x", "y", "z", "z"])["accuracy"] == 75.0


def test_recall_at_k_known_answer():
  # Speech 0 -> text 0 best (rank 0); speech 1 -> its text ranked 2nd; speech 2 -> ranked 3rd.
  sim = np.array([[0.9, 0.1, 0.0],
                  [0.8, 0.5, 0.1],
                  [0.3, 0.4, 0.2]])
  out = metrics.recall_at_k(sim, ks=(1, 2, 3))
  assert out["speech_to_text/R@1"] == pytest.approx(100 / 3)
  assert out["speech_to_text/R@2"] == pytest.approx(200 / 3)
  assert out["speech_to_text/R@3"] == 100.0
  # Text columns: text 0 -> speech 0 best; text 1 -> speech 1 (0.5) best; text 2 -> speech 2
  # (0.2) behind speech 1 (0.1)? no: 0.2 > 0.1 and 0.0, so best.
  assert out["text_to_speech/R@1"] == 100.0


def test_recall_ties_count_against():
  out = metrics.recall_at_k(np.ones((4, 4)), ks=(1, 4))
  assert out["speech_to_text/R@1"] == 0.0 and out["speech_to_text/R@4"] == 100.0


def test_pretraining_loss_means_overall_and_per_kind():
  # Targets as seqio's Evaluator hands them over: each example's `kind` feature ([1]).
  kinds = [np.array([0]), np.array([2]), np.array([0]), np.array([1])]
  out = metrics.pretraining_loss(kinds, [1.0, 4.0, 3.0, 8.0])
  assert out == {"loss": 4.0, "loss/text": 2.0, "loss/speech": 8.0, "loss/paired": 4.0}
  assert metrics.pretraining_loss([np.array([1])], [2.5]) == {"loss": 2.5, "loss/speech": 2.5}
  with pytest.raises(ValueError, match="2 targets but 1"):
    metrics.pretraining_loss(kinds[:2], [1.0])
