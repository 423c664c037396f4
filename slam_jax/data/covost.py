"""Prepare CoVoST 2 En->X (official TSVs + Common Voice English MP3 clips) into TFRecords.

  python -m slam_jax.data.covost --covost_dir COVOST --clips_dir CV/en/clips --tgt de \
      --out CACHE/covost2_en_de [--splits train,dev,test] [--num_shards N] [--workers W]

Input, the CoVoST 2 release layout (https://github.com/facebookresearch/covost):
  COVOST/covost_v2.en_X.SPLIT.tsv   per split (written by the release's get_covost_splits.py),
                                    tab-separated with a header: path, sentence, translation,
                                    client_id (other columns are ignored)
  or COVOST/covost_v2.en_X.tsv      the release file: path, translation, split (+ sentence);
                                    rows are taken by their `split` column
  CV/en/clips/<path>                Common Voice English clips (MP3, 48 kHz); decoded by content
                                    with `slam_jax.data.audio.load_audio` (libsndfile >= 1.1 reads
                                    MP3), downmixed and resampled to 16 kHz
Output: CACHE/spm_target.model (case-preserving, trained on the train translations), and
CACHE/SPLIT.tfrecord-* with the prepared schema (slam_jax/data/prepare.py: id = clip
stem, audio, transcript = English sentence, speaker = client_id) plus `translation` (UTF-8), and
CACHE/SPLIT.summary.json with the counts per problem (missing clip, decode error, too long, ...)
as `prepare` does. The tasks in tasks/covost2.py read these. Split names are the release's
(train, dev, test); the tasks map validation -> dev.
"""

import argparse
import csv
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence


from slam_jax.data import layout
from slam_jax.data import prepare as prepare_lib

TARGETS = ("de", "ca", "ar", "tr")  # SLAM's CoVoST 2 En->X pairs (all 15 work the same way).
SPLITS = ("train", "dev", "test")


def tsv_path(covost_dir: str, tgt: str, split: Optional[str] = None) -> str:
  name = f"covost_v2.en_{tgt}.{split}.tsv" if split else f"covost_v2.en_{tgt}.tsv"
  return os.path.join(covost_dir, name)


def read_rows(covost_dir: str, tgt: str, split: str) -> List[Dict[str, str]]:
  """The TSV rows of `split` (per-split file if present, else the release file's rows)."""
  csv.field_size_limit(sys.maxsize)
  path = tsv_path(covost_dir, tgt, split)
  by_column = False
  if not os.path.exists(path):
    path, by_column = tsv_path(covost_dir, tgt), True
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"neither {tsv_path(covost_dir, tgt, split)} nor {path} exists: download the CoVoST 2 "
          f"En->{tgt} TSV (and run the release's get_covost_splits.py) into {covost_dir}")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  for column in ("path", "translation") + (("split",) if by_column else ()):
    if rows and column not in rows[0]:
      raise ValueError(f"{path}: no '{column}' column (columns: {sorted(rows[0])})")
  if by_column:
    rows = [r for r in rows if r["split"] == split]
  return rows


def serialize(record: prepare_lib.Record, translation: str) -> bytes:
  """The prepared record plus a `translation` bytes feature."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  example = tf.train.Example.FromString(prepare_lib.serialize(record))
  example.features.feature["translation"].bytes_list.value.append(translation.encode("utf-8"))
  return example.SerializeToString(deterministic=True)


def prepare_split(covost_dir: str, clips_dir: str, tgt: str, split: str, out_dir: str,
                  config: prepare_lib.PrepareConfig = prepare_lib.PrepareConfig(),
                  num_shards: Optional[int] = None) -> Dict:
  """Decodes one split's clips into `out_dir`; returns the summary (counts per reason)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rows = read_rows(covost_dir, tgt, split)
  num_shards = num_shards or max(1, -(-len(rows) // 1024))
  os.makedirs(os.path.join(out_dir, "stats"), exist_ok=True)
  for shard in range(num_shards):
    stats = prepare_lib.Stats(config.max_logged)
    path = prepare_lib.shard_path(out_dir, split, shard, num_shards)
    tmp = os.path.join(out_dir, f".{os.path.basename(path)}.tmp")
    with tf.io.TFRecordWriter(tmp) as writer:
      for row in rows[shard::num_shards]:
        clip = os.path.join(clips_dir, row["path"])
        utt = layout.Utterance(id=os.path.splitext(row["path"])[0],
                               audio_path=clip if os.path.exists(clip) else None,
                               transcript=row.get("sentence", "") or "",
                               speaker=row.get("client_id", "") or "")
        stats.seen += 1
        if utt.audio_path is None:
          stats.add(prepare_lib.Event("missing_audio", clip, "clip not found", True))
          continue
        records, events = prepare_lib.process_utterance(utt, config)
        for e in events:
          stats.add(e)
        for r in records:
          writer.write(serialize(r, row["translation"]))
          stats.written += 1
          stats.seconds += r.audio.shape[0] / 16000.0
    os.replace(tmp, path)
    with open(os.path.join(out_dir, "stats", f"{split}-{shard:05d}-of-{num_shards:05d}.json"),
              "w") as f:
      json.dump(stats.to_json(), f, indent=1)
  return prepare_lib.write_summary(out_dir, split, num_shards, config.max_logged,
                                   tsv_path(covost_dir, tgt, split))


def train_target_vocab(translations: Sequence[str], model_prefix: str,
                       vocab_size: int = 8000) -> str:
  """A case-preserving SentencePiece model of the targets (unlike vocab.train_sentencepiece,
  which lower-cases for the English side); ids as everywhere: PAD 0, EOS 1, UNK 2. Returns the
  .model path. CoVoST 2's En->X baselines use 8k-piece unigram models (Wang et al. 2020)."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  lines = [" ".join(t.split()) for t in translations if t.strip()]
  if not lines:
    raise ValueError(f"train_target_vocab({model_prefix}): no non-empty translations")
  os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_prefix=model_prefix, vocab_size=vocab_size,
      model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
      hard_vocab_limit=False, normalization_rule_name="identity", minloglevel=2)
  return model_prefix + ".model"


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--covost_dir", required=True)
  parser.add_argument("--clips_dir", required=True, help="Common Voice en/clips")
  parser.add_argument("--tgt", required=True, help="target language, e.g. de")
  parser.add_argument("--out", required=True)
  parser.add_argument("--splits", default=",".join(SPLITS))
  parser.add_argument("--num_shards", type=int, default=None)
  parser.add_argument("--max_seconds", type=float, default=30.0)
  parser.add_argument("--vocab_size", type=int, default=8000,
                      help="pieces of OUT/spm_target.model, trained on the train translations "
                           "(0: do not train one)")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  # Empty transcripts are kept: ST needs the translation, not the English sentence.
  config = prepare_lib.PrepareConfig(max_seconds=args.max_seconds, empty_transcript="keep")
  for split in args.splits.split(","):
    summary = prepare_split(args.covost_dir, args.clips_dir, args.tgt, split, args.out, config,
                            args.num_shards)
    print(json.dumps({k: summary[k] for k in ("split", "utterances_seen", "examples_written",
                                              "hours_written", "counts")}, indent=1))
  if args.vocab_size:
    rows = read_rows(args.covost_dir, args.tgt, "train")
    path = train_target_vocab([r["translation"] for r in rows],
                              os.path.join(args.out, "spm_target"), args.vocab_size)
    print(f"[covost] wrote {path}")


if __name__ == "__main__":
  main()
