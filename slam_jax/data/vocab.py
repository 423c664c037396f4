"""SentencePiece vocabulary: deterministic training on the text side, loading through seqio.

Id layout follows seqio/T5: PAD = 0, EOS = 1, UNK = 2, no BOS. The seqio vocabulary adds
`extra_ids` ids at the top (default 1): `<extra_id_0>` = vocab_size - 1 is never produced from
text, so the model can use it as the [MASK] token (see slam_jax/masking.py).

CLI (train on any LibriSpeech-layout transcripts or plain text files):
  python -m slam_jax.data.vocab --out DIR/vocab/spm --vocab_size 1023 \
      --trans_root DIR/text/train [--text_files a.txt,b.txt]
"""

import argparse
import functools
import glob
import os
from typing import FrozenSet, Iterable, List, Optional, Sequence

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
DEFAULT_EXTRA_IDS = 1


def normalize_text(text: str) -> str:
  """The text normalisation every task applies before tokenisation: lower case, single spaces."""
  return " ".join(text.lower().split())


def train_sentencepiece(sentences: Iterable[str], model_prefix: str, vocab_size: int = 1023,
                        model_type: str = "unigram", character_coverage: float = 1.0) -> str:
  """Trains a SentencePiece model on `sentences` (normalised here); returns the .model path.

  Deterministic: single thread, every sentence used in the given order, no sampling.
  `vocab_size` counts PAD/EOS/UNK; it is an upper bound for very small corpora.
  """
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  lines = [normalize_text(s) for s in sentences]
  lines = [s for s in lines if s]
  if not lines:
    raise ValueError(f"train_sentencepiece({model_prefix}): no non-empty sentences given")
  os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines),
      model_prefix=model_prefix,
      vocab_size=vocab_size,
      model_type=model_type,
      character_coverage=character_coverage,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      num_threads=1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      hard_vocab_limit=False,
      minloglevel=2)
  # The trainer records the absolute output prefix in the model; keep only the base name so
  # the same sentences give a byte-identical file wherever it is written.
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  path = model_prefix + ".model"
  with open(path, "rb") as f:
    proto = sentencepiece_model_pb2.ModelProto.FromString(f.read())
  proto.trainer_spec.model_prefix = os.path.basename(model_prefix)
  with open(path, "wb") as f:
    f.write(proto.SerializeToString())
  return path


def read_sentences(trans_root: Optional[str] = None,
                   text_files: Sequence[str] = ()) -> List[str]:
  """Transcript texts under `trans_root` (LibriSpeech layout) plus lines of `text_files`."""
  from slam_jax.data import layout  # pylint: disable=g-import-not-at-top
  out: List[str] = []
  if trans_root:
    paths = sorted(glob.glob(os.path.join(trans_root, "**", "*" + layout.TRANSCRIPT_SUFFIX),
                             recursive=True))
    for path in paths:
      texts, _ = layout.read_transcripts(path)
      out.extend(texts[k] for k in sorted(texts))
  for path in text_files:
    with open(path, encoding="utf-8", errors="replace") as f:
      out.extend(line.rstrip("\n") for line in f)
  return out


def get_vocabulary(model_path: str, extra_ids: int = DEFAULT_EXTRA_IDS):
  """A `seqio.SentencePieceVocabulary` for `model_path`."""
  import seqio  # pylint: disable=g-import-not-at-top
  return seqio.SentencePieceVocabulary(model_path, extra_ids=extra_ids)


@functools.lru_cache(maxsize=16)
def _processor(model_path: str):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  return spm.SentencePieceProcessor(model_file=model_path)


@functools.lru_cache(maxsize=16)
def piece_characters(model_path: str) -> FrozenSet[str]:
  """Characters that occur in the model's normal pieces, plus the space."""
  sp = _processor(model_path)
  chars = {" "}
  for i in range(sp.get_piece_size()):
    if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
      continue
    chars.update(sp.id_to_piece(i).replace("\u2581", ""))
  return frozenset(chars)


class CharacterChecker:
  """Finds characters a SentencePiece model maps to UNK (exactly, per character, cached)."""

  def __init__(self, model_path: str):
    self._sp = _processor(model_path)
    self._known = set(piece_characters(model_path))
    self._unknown = set()

  def unencodable(self, text: str) -> List[str]:
    """Sorted characters of `text` (after normalize_text) that the model cannot encode."""
    bad = []
    for ch in set(normalize_text(text)):
      if ch in self._known:
        continue
      if ch in self._unknown or UNK_ID in self._sp.encode(ch):
        self._unknown.add(ch)
        bad.append(ch)
      else:
        self._known.add(ch)
    return sorted(bad)

  def strip(self, text: str) -> str:
    """`text` normalised, without its unencodable characters."""
    bad = set(self.unencodable(text))
    return normalize_text("".join(c for c in normalize_text(text) if c not in bad))


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="model prefix: writes PREFIX.model/.vocab")
  parser.add_argument("--vocab_size", type=int, default=1023)
  parser.add_argument("--model_type", default="unigram", choices=("unigram", "bpe", "char"))
  parser.add_argument("--trans_root", default=None, help="LibriSpeech-layout dir of transcripts")
  parser.add_argument("--text_files", default="", help="comma-separated plain text files")
  args = parser.parse_args(argv)
  files = [p for p in args.text_files.split(",") if p]
  sentences = read_sentences(args.trans_root, files)
  path = train_sentencepiece(sentences, args.out, args.vocab_size, args.model_type)
  print(f"[slam_jax] wrote {path} ({_processor(path).get_piece_size()} pieces) from "
        f"{len(sentences)} sentences")


if __name__ == "__main__":
  main()
