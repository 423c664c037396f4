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
  assert summary["examples_written"] == 3 and summary["utterances_seen"] == 10
  assert any("1-7-0001.flac" in e for e in summary["examples"]["decode_error"])
  records = _read(str(tmp_path / "cache"), "train")
  # Unencodable characters keep the utterance by default (they become UNK in the pipeline).
  assert sorted(records) == ["1-7-0000", "1-7-0007", "1-7-0008"]
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


def _write(path, x, rate=16000, **kw):
  path.parent.mkdir(parents=True, exist_ok=True)
  soundfile.write(str(path), x, rate, **kw)


def test_split_cuts_long_recordings_at_pauses():
  rng = np.random.default_rng(0)
  speech = lambda s: (3000 * rng.standard_normal(int(s * 16000))).astype(np.int16)
  pause = lambda s: np.zeros(int(s * 16000), np.int16)
  # 8 s speech, 0.3 s pause at 8.0 s, 7 s speech, pause at 15.3 s, 4 s speech; limit 10 s.
  pcm = np.concatenate([speech(8.0), pause(0.3), speech(7.0), pause(0.3), speech(4.0)])
  cuts = prepare.split_at_pauses(pcm, 10 * 16000, 5 * 16000)
  assert len(cuts) == 4 and cuts[0] == 0 and cuts[-1] == pcm.shape[0]
  assert 8.0 <= cuts[1] / 16000 < 8.3 and 15.3 <= cuts[2] / 16000 < 15.6  # Inside the pauses.
  assert max(np.diff(cuts)) <= 10 * 16000


def test_bom_and_undecodable_lines_and_skipped_files_are_counted(tmp_path):
  d = tmp_path / "src" / "3" / "9"
  for i in range(3):
    _write(d / f"3-9-000{i}.flac", _tone(0.5))
  (d / "3-9.trans.txt").write_bytes(
      b"\xef\xbb\xbf3-9-0000 A BOM\n3-9-0001 \xff BAD BYTES\n")
  (d / "notes.txt").write_text("not audio")
  _write(d / "3-9-0003.mp3", _tone(0.5), format="MP3")  # Was ignored by extension.
  (d / "3-9.trans.txt").write_bytes((d / "3-9.trans.txt").read_bytes() + b"3-9-0003 MP THREE\n")
  summary = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "c"), "train", num_shards=1)
  records = _read(str(tmp_path / "c"), "train")
  assert records["3-9-0000"]["transcript"].numpy() == b"A BOM"  # No U+FEFF in the id.
  assert records["3-9-0003"]["transcript"].numpy() == b"MP THREE"
  assert summary["counts"] == {"malformed_transcript_line": 1, "missing_transcript": 2,
                               "skipped_file": 1}
  assert any("not UTF-8" in e for e in summary["examples"]["missing_transcript"])
  assert summary["paired_written"] == 2 and summary["speech_only_written"] == 2
  assert "missing_audio" not in summary["counts"]


def test_truncated_and_silent_audio_are_counted(tmp_path):
  d = tmp_path / "src" / "5" / "1"
  _write(d / "5-1-0000.wav", _tone(1.0), subtype="PCM_16")
  whole = (d / "5-1-0000.wav").read_bytes()
  (d / "5-1-0000.wav").write_bytes(whole[:len(whole) // 2])
  _write(d / "5-1-0001.flac", np.zeros(16000, np.float32))           # Digital silence.
  _write(d / "5-1-0002.flac", np.full(16000, 2e-5, np.float32))      # -94 dBFS.
  _write(d / "5-1-0003.flac", _tone(1.0))
  summary = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "c"), "train", num_shards=1)
  assert summary["counts"] == {"truncated_audio": 1, "silent": 2}
  assert summary["examples_written"] == 1
  assert any("re-download" in e for e in summary["examples"]["truncated_audio"])
  kept = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "k"), "train",
                         prepare.PrepareConfig(silence="keep"), num_shards=1)
  assert kept["examples_written"] == 3 and kept["dropped"] == {"truncated_audio": 1}


def test_unencodable_text_keeps_the_speech(messy, tmp_path, model_path):
  config = prepare.PrepareConfig(max_seconds=2.0, unencodable="speech_only",
                                 vocab_path=model_path)
  prepare.prepare(messy, str(tmp_path / "c"), "train", config, num_shards=1)
  records = _read(str(tmp_path / "c"), "train")
  assert records["1-7-0007"]["transcript"].numpy() == b""
  assert records["1-7-0007"]["audio"].shape[0] == 16000
  with pytest.raises(ValueError, match="speech_only"):
    prepare.PrepareConfig(unencodable="drop")


def test_changed_sources_redo_finished_shards_and_empty_sources_warn(tmp_path, caplog):
  src, out = tmp_path / "src", str(tmp_path / "c")
  src.mkdir()
  summary = prepare.prepare(str(src), out, "train", num_shards=1)
  assert summary["utterances_seen"] == 0 and "no utterances" in summary["warnings"][0]
  assert "holds no utterances" in caplog.text
  _write(src / "7" / "2" / "7-2-0000.flac", _tone(0.5))
  summary = prepare.prepare(str(src), out, "train", num_shards=1)
  assert summary["utterances_seen"] == 1 and summary["examples_written"] == 1
  assert summary["warnings"] == [] and "redoing it" in caplog.text
  caplog.clear()
  prepare.prepare(str(src), out, "train", num_shards=1)  # Unchanged: reused silently.
  assert "redoing" not in caplog.text
  (src / "notes.md").write_text("not audio")  # A new skipped file changes shard 0's findings.
  summary = prepare.prepare(str(src), out, "train", num_shards=1)
  assert "redoing it" in caplog.text and summary["counts"].get("skipped_file") == 1
  caplog.clear()
  prepare.prepare(str(src), out, "train", num_shards=1)
  assert "redoing" not in caplog.text


def test_serialized_examples_do_not_depend_on_the_hash_seed():
  # The feature map is written in key order (deterministic=True): a corpus rebuilt in another
  # process (another PYTHONHASHSEED) has the same bytes. Re-serialising the parsed example with
  # sorted keys gives back exactly what `serialize` wrote.
  record = prepare.Record(id="1-2-0003", audio=np.arange(5, dtype=np.int16),
                          transcript="HELLO", speaker="1")
  data = prepare.serialize(record)
  assert tf.train.Example.FromString(data).SerializeToString(deterministic=True) == data
