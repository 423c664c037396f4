"""prepare: every kind of bad input is counted, logged and skipped; the run always finishes."""
import json
import os
import random

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from slam_jax.data.demo import grammar
from slam_jax.data import prepare
from slam_jax.data import preprocessors
from slam_jax.data import vocab


def _tone(seconds, rate=16000):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  sents = grammar.Grammar().sentences(random.Random(0), 400)
  return vocab.train_sentencepiece(sents, str(tmp_path_factory.mktemp("v") / "spm"), 150)


@pytest.fixture()
def messy(tmp_path):
  """A LibriSpeech-layout dir with one utterance per problem."""
  d = tmp_path / "src" / "1" / "7"
  d.mkdir(parents=True)
  w = lambda name, x, rate=16000, **kw: soundfile.write(str(d / name), x, rate, **kw)
  w("1-7-0000.flac", _tone(1.0))                        # good
  (d / "1-7-0001.flac").write_bytes(b"garbage" * 50)    # decode_error
  (d / "1-7-0002.wav").write_bytes(b"")                 # empty_audio
  w("1-7-0003.flac", _tone(1.0))                        # empty transcript
  w("1-7-0004.flac", _tone(1.0))                        # no transcript line
  w("1-7-0005.flac", _tone(3.0))                        # too long (transcribed)
  w("1-7-0006.flac", _tone(0.05))                       # too short
  w("1-7-0007.flac", _tone(1.0))                        # unencodable characters
  w("1-7-0008.wav", np.stack([_tone(1.0, 44100)] * 2, 1), 44100, subtype="FLOAT")  # good
  lines = ["1-7-0000 THE DOG RAN", "1-7-0001 A CAT", "1-7-0002 A CAT", "1-7-0003",
           "1-7-0005 THE LONG ONE", "1-7-0006 SHORT", "1-7-0007 THE DOG \u2603 RAN",
           "1-7-0008 THE CAT SAT", "1-7-0099 AN ORPHAN LINE"]
  with open(d / "1-7.trans.txt", "wb") as f:
    f.write(("\n".join(lines) + "\n").encode())
    f.write(b"1-7-0100 \xff\xfe BROKEN\n")              # malformed line
  return str(tmp_path / "src")


def _read(cache, split):
  files = sorted(tf.io.gfile.glob(prepare.file_pattern(cache, split)))
  ds = tf.data.TFRecordDataset(files).map(
      lambda s: tf.io.parse_single_example(s, preprocessors.PREPARED_FEATURE_DESCRIPTION))
  ds = preprocessors.from_prepared(ds)
  return {ex["id"].numpy().decode(): ex for ex in ds}


def test_bad_inputs_are_counted_and_skipped(messy, tmp_path, model_path):
  config = prepare.PrepareConfig(max_seconds=2.0, require_transcript=True, vocab_path=model_path)
  summary = prepare.prepare(messy, str(tmp_path / "cache"), "train", config, num_shards=2)
  assert summary["counts"] == {
      "decode_error": 1, "empty_audio": 1, "empty_transcript": 1, "missing_audio": 1,
      "missing_transcript": 1, "too_long": 1, "too_short": 1, "unencodable": 1,
      "malformed_transcript_line": 1}
  assert summary["examples_written"] == 2 and summary["utterances_seen"] == 10
  assert any("1-7-0001.flac" in e for e in summary["examples"]["decode_error"])
  records = _read(str(tmp_path / "cache"), "train")
  assert sorted(records) == ["1-7-0000", "1-7-0008"]
  assert records["1-7-0008"]["audio"].shape[0] == 16000  # 44.1 kHz stereo -> 16 kHz mono.
  assert records["1-7-0000"]["transcript"].numpy() == b"THE DOG RAN"
  with open(tmp_path / "cache" / "train.summary.json") as f:
    assert json.load(f)["counts"] == summary["counts"]


def test_keep_trim_split_and_strip_policies(messy, tmp_path, model_path):
  config = prepare.PrepareConfig(max_seconds=2.0, long_policy="trim", empty_transcript="keep",
                                 unencodable="strip", vocab_path=model_path)
  summary = prepare.prepare(messy, str(tmp_path / "c"), "train", config, num_shards=1)
  records = _read(str(tmp_path / "c"), "train")
  assert sorted(records) == ["1-7-0000", "1-7-0003", "1-7-0004", "1-7-0005", "1-7-0007",
                             "1-7-0008"]
  assert records["1-7-0005"]["audio"].shape[0] == 32000  # Trimmed to max_seconds.
  assert records["1-7-0007"]["transcript"].numpy() == b"the dog ran"
  assert records["1-7-0004"]["transcript"].numpy() == b""
  assert summary["dropped"].get("too_long", 0) == 0 and summary["counts"]["too_long"] == 1
  # "split" cuts untranscribed audio only.
  os.remove(os.path.join(messy, "1", "7", "1-7.trans.txt"))
  config = prepare.PrepareConfig(max_seconds=1.2, long_policy="split")
  prepare.prepare(messy, str(tmp_path / "s"), "train", config, num_shards=1)
  pieces = sorted(k for k in _read(str(tmp_path / "s"), "train") if k.startswith("1-7-0005"))
  assert pieces == ["1-7-0005_000", "1-7-0005_001", "1-7-0005_002"]


def test_processes_write_disjoint_shards(messy, tmp_path):
  config = prepare.PrepareConfig(max_seconds=5.0)
  out = str(tmp_path / "multi")
  for k in range(2):
    summary = prepare.prepare(messy, out, "train", config, num_shards=4, process_index=k,
                              num_processes=2)
  assert summary["shards_done"] == 4
  single = prepare.prepare(messy, str(tmp_path / "one"), "train", config, num_shards=4,
                           workers=2)  # Decoding in 2 worker processes.
  assert summary["counts"] == single["counts"]
  assert sorted(_read(out, "train")) == sorted(_read(str(tmp_path / "one"), "train"))
  for shard in range(4):
    with open(prepare.shard_path(out, "train", shard, 4), "rb") as a, open(
        prepare.shard_path(str(tmp_path / "one"), "train", shard, 4), "rb") as b:
      assert a.read() == b.read()
  # A rerun skips finished shards.
  mtime = os.path.getmtime(prepare.shard_path(out, "train", 0, 4))
  prepare.prepare(messy, out, "train", config, num_shards=4)
  assert os.path.getmtime(prepare.shard_path(out, "train", 0, 4)) == mtime


def test_cli(messy, tmp_path, capsys):
  prepare.main(["--src", messy, "--out", str(tmp_path / "cli"), "--split", "dev",
                "--max_seconds", "2.5", "--long_policy", "drop", "--require_transcript"])
  out = json.loads(capsys.readouterr().out)
  assert out["examples_written"] == 3 and out["counts"]["too_long"] == 1


def test_same_file_name_in_two_directories(tmp_path):
  for book in ("a", "b"):
    d = tmp_path / "ll" / "42" / book
    d.mkdir(parents=True)
    soundfile.write(str(d / "chapter_01.flac"), _tone(0.5), 16000)
  from slam_jax.data import layout  # pylint: disable=g-import-not-at-top
  scan = layout.scan(str(tmp_path / "ll"))
  assert sorted(u.id for u in scan.utterances) == ["42-b-chapter_01", "chapter_01"]
  assert scan.duplicate_ids == ["chapter_01"] and {u.speaker for u in scan.utterances} == {"42"}
