"""BLEU / chrF metric_fns against sacrebleu and a hand computation."""
import math

import pytest
import sacrebleu

from slam_jax.finetune import st_metrics


def test_bleu_of_a_known_pair():
  ref = "the cat sat on the mat"
  hyp = "the cat sat on a mat"
  # Matches: 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; equal lengths: no brevity penalty.
  expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4)
                             + math.log(1 / 3)) / 4)
  got = st_metrics.bleu([ref], [hyp])["bleu"]
  assert got == pytest.approx(expected, rel=1e-6)
  assert got == pytest.approx(sacrebleu.corpus_bleu([hyp], [[ref]]).score, rel=1e-9)
  assert st_metrics.bleu([ref], [ref])["bleu"] == pytest.approx(100.0)


def test_chrf_matches_sacrebleu_and_errors():
  refs = ["hallo welt", "ein kleiner test"]
  hyps = ["hallo welt", "ein grosser test"]
  assert st_metrics.chrf(refs, hyps)["chrf"] == pytest.approx(
      sacrebleu.corpus_chrf(hyps, [refs]).score)
  with pytest.raises(ValueError, match="2 references but 1 predictions"):
    st_metrics.bleu(refs, hyps[:1])
