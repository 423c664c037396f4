"""Translation metrics as seqio metric_fns: corpus BLEU and chrF from sacrebleu.

CoVoST 2 reports case-sensitive, detokenized corpus BLEU with sacrebleu's default '13a'
tokenizer (Wang et al. 2020, arXiv 2007.10310); `targets` and `predictions` are therefore plain
detokenized strings (the seq2seq model's `postprocess`), one reference per example.
"""

from typing import Dict, Sequence

import sacrebleu


def _check(targets: Sequence[str], predictions: Sequence[str], name: str) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"{name}: {len(targets)} references but {len(predictions)} predictions")
  if not targets:
    raise ValueError(f"{name}: no examples to score")


def bleu(targets: Sequence[str], predictions: Sequence[str],
         tokenize: str = "13a") -> Dict[str, float]:
  """seqio metric_fn: {'bleu': corpus BLEU in [0, 100]} (sacrebleu, one reference each)."""
  _check(targets, predictions, "bleu")
  score = sacrebleu.corpus_bleu(list(predictions), [list(targets)], tokenize=tokenize)
  return {"bleu": float(score.score)}


def chrf(targets: Sequence[str], predictions: Sequence[str]) -> Dict[str, float]:
  """seqio metric_fn: {'chrf': corpus chrF in [0, 100]} (sacrebleu defaults: chrF2, n = 6)."""
  _check(targets, predictions, "chrf")
  return {"chrf": float(sacrebleu.corpus_chrf(list(predictions), [list(targets)]).score)}


METRIC_FNS = (bleu, chrf)
