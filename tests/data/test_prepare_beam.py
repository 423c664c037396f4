"""prepare_beam on Beam's local runners: the same shards, stats and summary as prepare, a
completion marker, reruns that skip finished shards, and counters that report progress; nothing
is fetched from the network (DirectRunner's Prism attempt is never made)."""
import json
import logging
import os

import apache_beam as beam
import numpy as np
import pytest
import soundfile
from apache_beam.metrics import metric as beam_metric

from slam_jax.data import prepare
from slam_jax.data import prepare_beam


def _tone(seconds, freq, rate=16000):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Two chapters: good utterances, an undecodable file, an orphan line, a long recording."""
  root = tmp_path_factory.mktemp("beam_src")
  for spk, chap in ((1, 7), (2, 9)):
    d = root / str(spk) / str(chap)
    d.mkdir(parents=True)
    lines = []
    for i in range(5):
      uid = f"{spk}-{chap}-{i:04d}"
      soundfile.write(str(d / f"{uid}.flac"), _tone(0.5 + 0.1 * i, 200 + 50 * i), 16000)
      lines.append(f"{uid} THE DOG RAN {i}")
    (d / f"{spk}-{chap}-0005.flac").write_bytes(b"garbage" * 40)  # decode_error
    lines += [f"{spk}-{chap}-0005 A CAT", f"{spk}-{chap}-0099 AN ORPHAN LINE"]  # missing_audio
    (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
  return str(root)


def _files(out):
  found = {}
  for dirpath, _, names in os.walk(out):
    for name in names:
      if name.endswith((".plan.json", ".fingerprint")):
        continue  # Plans exist only for Beam; fingerprints hold mtimes of this build.
      with open(os.path.join(dirpath, name), "rb") as f:
        found[os.path.relpath(os.path.join(dirpath, name), out)] = f.read()
  return found


def test_beam_writes_what_prepare_writes_and_marks_completion(corpus, tmp_path, caplog):
  config = prepare.PrepareConfig(max_seconds=0.75)  # The two longest utterances are too long.
  single = prepare.prepare(corpus, str(tmp_path / "single"), "train", config, num_shards=3)
  out = str(tmp_path / "beam")
  with caplog.at_level(logging.INFO):
    summary = prepare_beam.run(corpus, out, "train", config, num_shards=3)
  # The default runner never tries Beam's Prism runner (DirectRunner downloads it from GitHub).
  assert not [r for r in caplog.records if "prism" in r.getMessage().lower()]
  assert summary == dict(single, source=summary["source"])
  assert summary["counts"] == {"decode_error": 2, "missing_audio": 2, "too_long": 4}
  assert summary["examples_written"] == 6 and summary["shards_done"] == 3
  beam_files, single_files = _files(out), _files(str(tmp_path / "single"))
  assert beam_files == single_files  # Shards (bytes), stats, summary, marker.
  marker = json.loads(beam_files["train.COMPLETED"])
  assert marker == {"split": "train", "num_shards": 3, "utterances_seen": 14,
                    "examples_written": 6, "hours_written": summary["hours_written"]}


def test_rerun_skips_finished_shards_and_redoes_a_lost_one(corpus, tmp_path):
  out = str(tmp_path / "beam")
  config = prepare.PrepareConfig()
  prepare_beam.run(corpus, out, "train", config, num_shards=2)
  kept = prepare.shard_path(out, "train", 0, 2)
  lost = prepare.shard_path(out, "train", 1, 2)
  mtime = os.stat(kept).st_mtime_ns
  with open(lost, "rb") as f:
    lost_bytes = f.read()
  os.remove(lost)  # A worker died after the stats, or someone deleted it: redo that shard only.
  options = beam.options.pipeline_options.PipelineOptions(prepare_beam.with_default_runner([]))
  pipeline = beam.Pipeline(options=options)
  prepare_beam.build(pipeline, corpus, out, "train", config, num_shards=2)
  assert not os.path.exists(prepare.completion_marker(out, "train"))  # Removed at start.
  result = pipeline.run()
  result.wait_until_finish()
  counters = {r.key.metric.name: r.committed for r in result.metrics().query(
      beam_metric.MetricsFilter().with_namespace(prepare_beam.NAMESPACE))["counters"]}
  assert counters["shards_skipped"] == 1 and counters["shards_written"] == 1
  assert counters["dropped_decode_error"] >= 1 and counters["utterances_seen"] >= 5
  assert os.stat(kept).st_mtime_ns == mtime
  with open(lost, "rb") as f:
    assert f.read() == lost_bytes
  assert os.path.exists(prepare.completion_marker(out, "train"))


def test_default_runner_is_local_unless_one_is_named():
  assert prepare_beam.with_default_runner([]) == ["--runner=FnApiRunner"]
  assert prepare_beam.with_default_runner(["--direct_num_workers", "2"]) == [
      "--runner=FnApiRunner", "--direct_num_workers", "2"]
  for named in (["--runner", "DataflowRunner"], ["--runner=FlinkRunner", "--parallelism=4"]):
    assert prepare_beam.with_default_runner(named) == named


def test_cli_passes_pipeline_options_to_beam(corpus, tmp_path, capsys):
  # A runner other than the default (and one that fetches nothing): the option reaches Beam.
  prepare_beam.main(["--src", corpus, "--out", str(tmp_path / "cli"), "--split", "dev",
                     "--require_transcript", "--runner", "BundleBasedDirectRunner",
                     "--direct_num_workers", "1"])
  out = json.loads(capsys.readouterr().out)
  assert out["examples_written"] == 10 and out["counts"]["decode_error"] == 2
  assert out["shards_done"] == out["num_shards"] == 1
