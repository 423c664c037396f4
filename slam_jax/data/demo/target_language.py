"""The demo corpus's target language: a deterministic translation of every grammar sentence.

`Translator(grammar).translate("the big dog ran near my house")` -> "dogu-word big-word the-word
ran-word house-word my-word near-word" in invented words. Learnable but not a copy:
  - its own lexicon: every English lemma gets an invented word (2-3 CV syllables, seeded by a CRC
    of the lemma, collisions resolved in sorted order), names and place names are kept;
  - its own morphology: inflections become suffixes of the lemma's word (plural -ri, past -ku,
    third person -sa, -ing -nde, -ly adverb -li); compound nouns join their parts' words;
  - its own word order: a noun phrase [determiner] adjectives* noun becomes noun adjectives*
    [determiner] (adjectives and articles after the noun), and prepositions become
    postpositions (placed after their noun phrase).
The function depends on the English sentence only (never on a random state), so the corpus
files and any other sentence of the grammar translate the same way.
"""

import random
import zlib
from typing import Dict, List, Sequence, Tuple

from slam_jax.data.demo import grammar as grammar_lib

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
SUFFIXES = {"PL": "ri", "PAST": "ku", "3SG": "sa", "ING": "nde", "ADV": "li"}
DETERMINERS = frozenset("the a an this that my your our their his her some many few these those "
                        "all".split())
PREPOSITIONS = frozenset(grammar_lib._PREPOSITIONS) | {"in", "on", "at"}  # pylint: disable=protected-access


def _invented_word(lemma: str, salt: int) -> str:
  rng = random.Random(zlib.crc32(f"{lemma}/{salt}".encode()))
  syllables = 2 if len(lemma) <= 4 else 3
  return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


class Translator:
  """English grammar sentences -> the target language (see module docstring)."""

  def __init__(self, grammar: grammar_lib.Grammar = None):
    g = grammar or grammar_lib.Grammar()
    self._keep = set(g.names) | set(g.places)
    analyses: Dict[str, Tuple[str, str]] = {}

    def add(form, lemma, tag=""):
      analyses.setdefault(form, (lemma, tag))

    for word in g.vocabulary():  # Uninflected forms first: "read" is the base, "fish" singular.
      add(word, word)
    for n in g.nouns:
      add(g.plurals[n], n, "PL")
    for v in list(g.verbs) + list(g.intransitive):
      add(grammar_lib.past(v), v, "PAST")
      add(grammar_lib.third_person(v), v, "3SG")
      add(grammar_lib.gerund(v), v, "ING")
    for a in grammar_lib._words(grammar_lib._LY_ADVERB_BASES):  # pylint: disable=protected-access
      analyses[grammar_lib.adverb(a)] = (a, "ADV")
    for n in g.nouns:  # Inflected forms override the identity entries above.
      if g.plurals[n] != n:
        analyses[g.plurals[n]] = (n, "PL")
    for v in list(g.verbs) + list(g.intransitive):
      for form, tag in ((grammar_lib.past(v), "PAST"), (grammar_lib.third_person(v), "3SG"),
                        (grammar_lib.gerund(v), "ING")):
        if form != v and form not in g.nouns:
          analyses[form] = (v, tag)
    self._compounds = {}
    short = [n for n in g.nouns if len(n) <= 5]
    for m in short:
      for h in grammar_lib._COMPOUND_HEADS:  # pylint: disable=protected-access
        if m + h in g.compounds:
          self._compounds[m + h] = (m, h)
    self._analyses = analyses
    lemmas = sorted({lemma for lemma, _ in analyses.values()} |
                    {p for pair in self._compounds.values() for p in pair})
    self._lexicon: Dict[str, str] = {}
    used = set()
    for lemma in lemmas:
      salt = 0
      word = _invented_word(lemma, salt)
      while word in used:
        salt += 1
        word = _invented_word(lemma, salt)
      used.add(word)
      self._lexicon[lemma] = word
    self._adjectives = set(g.adjectives)
    self._nouns = set(g.nouns) | set(g.plurals.values()) | set(g.compounds) | self._keep

  def word(self, english: str) -> str:
    """One English word form -> its target word (unknown words are kept)."""
    if english in self._keep:
      return english
    if english in self._compounds:
      m, h = self._compounds[english]
      return self._lexicon[m] + self._lexicon[h]
    if english not in self._analyses:
      return english
    lemma, tag = self._analyses[english]
    return self._lexicon[lemma] + SUFFIXES.get(tag, "")

  def reorder(self, words: Sequence[str]) -> List[str]:
    """English word order -> target word order (still English words)."""
    units: List[Tuple[str, List[str]]] = []  # (kind, words): kind 'np' or 'word'
    i, n = 0, len(words)
    while i < n:
      j = i
      if words[j] in DETERMINERS:
        j += 1
        if j < n and words[j - 1] == "all" and words[j] == "the":
          j += 1
      adj_start = j
      while j < n and words[j] in self._adjectives and j + 1 < n and (
          words[j + 1] in self._adjectives or words[j + 1] in self._nouns):
        j += 1
      if j < n and words[j] in self._nouns and (j > i or words[j] in self._nouns):
        dets, adjs = list(words[i:adj_start]), list(words[adj_start:j])
        units.append(("np", [words[j]] + adjs + dets))
        i = j + 1
      else:
        units.append(("word", [words[i]]))
        i += 1
    out: List[str] = []
    k = 0
    while k < len(units):
      kind, ws = units[k]
      if kind == "word" and ws[0] in PREPOSITIONS and k + 1 < len(units) and units[k + 1][0] == "np":
        out.extend(units[k + 1][1] + ws)
        k += 2
      else:
        out.extend(ws)
        k += 1
    return out

  def translate(self, sentence: str) -> str:
    """A lower-case English grammar sentence -> its target-language sentence."""
    return " ".join(self.word(w) for w in self.reorder(sentence.lower().split()))


ST_DIR = "st"
TARGET_VOCAB = "spm_target"  # DIR/vocab/spm_target.model


def tsv_path(corpus_dir: str, split: str) -> str:
  """DIR/st/SPLIT.tsv: one `id<TAB>english<TAB>target` line per paired utterance."""
  import os  # pylint: disable=g-import-not-at-top
  return os.path.join(corpus_dir, ST_DIR, f"{split}.tsv")


def write_translations(corpus_dir: str, vocab_size: int,
                       splits: Sequence[str] = ("train", "validation")) -> Dict:
  """Adds the speech-translation side to a built demo corpus (idempotent, deterministic).

  Writes DIR/st/SPLIT.tsv for the paired set and trains the target SentencePiece model
  DIR/vocab/spm_target.model on the translations of the text-only training sentences (the
  same sentences the English vocabulary is trained on). Returns the manifest entry.
  """
  import os  # pylint: disable=g-import-not-at-top
  from slam_jax.data import layout  # pylint: disable=g-import-not-at-top
  from slam_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  translator = Translator()
  os.makedirs(os.path.join(corpus_dir, ST_DIR), exist_ok=True)
  counts = {}
  for split in splits:
    utts = layout.scan(os.path.join(corpus_dir, "paired", split)).utterances
    with open(tsv_path(corpus_dir, split), "w", encoding="utf-8") as f:
      for u in utts:
        english = " ".join((u.transcript or "").lower().split())
        f.write(f"{u.id}\t{english}\t{translator.translate(english)}\n")
    counts[split] = len(utts)
  text = vocab_lib.read_sentences(os.path.join(corpus_dir, "text", "train"))
  path = vocab_lib.train_sentencepiece([translator.translate(s.lower()) for s in text],
                                       os.path.join(corpus_dir, "vocab", TARGET_VOCAB),
                                       vocab_size=vocab_size)
  return {"tsv": {s: os.path.relpath(tsv_path(corpus_dir, s), corpus_dir) for s in splits},
          "pairs": counts, "target_vocab": os.path.relpath(path, corpus_dir),
          "target_pieces": vocab_lib._processor(path).get_piece_size()}  # pylint: disable=protected-access


def main(argv=None) -> None:
  """`python -m slam_jax.data.demo.target_language --corpus DIR`: add the ST side to a corpus."""
  import argparse  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument("--corpus", required=True)
  parser.add_argument("--vocab_size", type=int, default=None,
                      help="target pieces (default: the corpus size's English vocab size)")
  args = parser.parse_args(argv)
  manifest_path = os.path.join(args.corpus, "manifest.json")
  with open(manifest_path) as f:
    manifest = json.load(f)
  size = args.vocab_size or manifest["size_settings"]["vocab_size"]
  manifest["st"] = write_translations(args.corpus, size)
  with open(manifest_path, "w") as f:
    json.dump(manifest, f, indent=1)
  print(json.dumps(manifest["st"], indent=1))


if __name__ == "__main__":
  main()
