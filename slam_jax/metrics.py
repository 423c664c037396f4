"""Downstream metrics, as seqio `metric_fns` (`fn(targets, predictions) -> {name: value}`).

  wer(targets, predictions)        word error rate in percent (jiwer), over the whole corpus
  accuracy(targets, predictions)   exact-match accuracy in percent
  recall_at_k(similarity, ks)      speech->text and text->speech R@k in percent from a [N, N]
                                   score matrix whose diagonal holds the true pairs
  pretraining_loss(targets, scores)  score metric of the pre-training tasks: the mean
                                   per-example loss (SlamModel.score_batch), overall and per kind

seqio's Evaluator calls each metric fn with the postprocessed targets and predictions of a task's
whole eval split; `slam_jax.evaluate` calls them the same way.
"""

from typing import Dict, Sequence

import numpy as np

from slam_jax import types


def _check_lengths(targets: Sequence, predictions: Sequence) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  if not len(targets):
    raise ValueError("No examples to score (empty eval split?)")


def wer(targets: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """Corpus word error rate (substitutions + deletions + insertions) / reference words, in %.

  Raises:
    ValueError: a reference transcript is empty (WER divides by its length: drop such
      examples from the eval split, as LibriSpeech scoring does).
  """
  import jiwer  # pylint: disable=g-import-not-at-top
  _check_lengths(targets, predictions)
  empty = [i for i, t in enumerate(targets) if not str(t).split()]
  if empty:
    raise ValueError(f"WER: reference transcript(s) {empty[:5]} are empty (of {len(targets)}); "
                     "filter empty transcripts out of the eval split")
  out = jiwer.process_words(list(map(str, targets)), [str(p) for p in predictions])
  return {"wer": 100.0 * float(out.wer)}


def accuracy(targets: Sequence, predictions: Sequence) -> Dict[str, float]:
  """Exact-match accuracy in percent."""
  _check_lengths(targets, predictions)
  hits = sum(int(t == p) for t, p in zip(targets, predictions))
  return {"accuracy": 100.0 * hits / len(targets)}


def pretraining_loss(targets: Sequence, scores: Sequence) -> Dict[str, float]:
  """Mean pre-training loss of an eval split, overall and per example kind.

  A seqio *score* metric (`fn(targets, scores)`): `scores` are `SlamModel.score_batch`'s
  per-example losses and `targets` each example's `kind` feature (seqio.Evaluator with
  `target_field_name = 'kind'`, as gin/t5x/eval.gin binds). This is what
  `python -m t5x.eval` reports for the pre-training tasks.
  """
  _check_lengths(targets, scores)
  kinds = np.asarray([np.asarray(t).reshape(-1)[0] for t in targets], np.int64)
  values = np.asarray(scores, np.float64).reshape(-1)
  out = {"loss": float(values.mean())}
  for kind, name in types.KIND_NAMES.items():
    if (kinds == kind).any():
      out[f"loss/{name}"] = float(values[kinds == kind].mean())
  return out


def recall_at_k(similarity: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
  """Retrieval recall@k in both directions, in percent.

  Args:
    similarity: [N, N] scores, row i = speech i, column j = text j; pair (i, i) is the true one.
      Ties count against the true item (it must score strictly higher to rank above another).
    ks: cut-offs.

  Returns:
    {'speech_to_text/R@k': ..., 'text_to_speech/R@k': ...} for each k.
  """
  sim = np.asarray(similarity, np.float64)
  if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or not sim.shape[0]:
    raise ValueError(f"similarity must be a non-empty square [N, N] matrix, got {sim.shape}")
  diag = np.diag(sim)
  # Rank of the true item = number of candidates scoring at least as high, minus itself.
  rank_s2t = np.sum(sim >= diag[:, None], axis=1) - 1  # per speech row, over texts
  rank_t2s = np.sum(sim >= diag[None, :], axis=0) - 1  # per text column, over speeches
  out = {}
  for k in ks:
    out[f"speech_to_text/R@{k}"] = 100.0 * float(np.mean(rank_s2t < k))
    out[f"text_to_speech/R@{k}"] = 100.0 * float(np.mean(rank_t2s < k))
  return out
