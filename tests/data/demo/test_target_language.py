"""The demo target language: deterministic, reordered, its own words; written by the corpus."""
import os
import random

from slam_jax.data.demo import grammar
from slam_jax.data.demo import target_language


def test_translation_known_answers_and_word_order():
  tr = target_language.Translator()
  words = "the huge dog chased my cats near oakford".split()
  # NP: [det] adj* noun -> noun adj* [det]; prepositions follow their noun phrase.
  assert tr.reorder(words) == "dog huge the chased cats my oakford near".split()
  out = tr.translate("the huge dog chased my cats near oakford").split()
  assert out[0] == tr.word("dog") and out[4] == tr.word("cat") + "ri"  # plural suffix
  assert out[3] == tr.word("chase") + "ku"  # past suffix
  assert out[6] == "oakford"  # place names are kept
  assert tr.translate("the huge dog") != "the huge dog"
  # Deterministic and injective on a sample of grammar sentences.
  sentences = grammar.Grammar().sentences(random.Random(7), 300)
  again = target_language.Translator()
  outs = [tr.translate(s) for s in sentences]
  assert outs == [again.translate(s) for s in sentences]
  assert len(set(outs)) == len(set(sentences))
  # Not a copy: most English words do not appear in the translation.
  shared = sum(w in set(s.split()) for s, o in zip(sentences, outs) for w in o.split())
  assert shared < 0.2 * sum(len(o.split()) for o in outs)


def test_corpus_writes_translations(tiny_corpus):
  lines = open(target_language.tsv_path(tiny_corpus, "train"), encoding="utf-8").readlines()
  assert len(lines) == 12
  tr = target_language.Translator()
  uid, english, target = lines[0].rstrip("\n").split("\t")
  assert uid.count("-") == 2 and english == english.lower()
  assert target == tr.translate(english)
  assert os.path.exists(os.path.join(tiny_corpus, "vocab", "spm_target.model"))
