"""The benchmark harness (slam_jax/bench/harness.py): an end-to-end tiny run writing JSON, the
peer's skip path, flag parsing and config validation. No timing asserts."""

import json
import os

import numpy as np
import pytest

from slam_jax.bench import harness as bench
from slam_jax.bench import peer as bench_peer
from slam_jax import trainer as trainer_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_harness_runs_tiny_encoder_mode_and_writes_json(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  # The peer is requested but reported unavailable: the run goes on without it and says why.
  monkeypatch.setattr(bench_peer, "available", lambda: (False, "PyTorch peer skipped: test"))
  # Spy on the train steps built, to see the microbatch setting reach the trainer.
  built = []
  make_train_step = trainer_lib.make_train_step

  def spy(*args, **kwargs):
    built.append(args[3] if len(args) > 3 else kwargs.get("num_microbatches", 1))
    return make_train_step(*args, **kwargs)

  monkeypatch.setattr(trainer_lib, "make_train_step", spy)
  out = tmp_path / "bench.json"
  report = bench.main(["--gin_file=gin/bench/tiny.gin", "--peer", f"--json={out}",
                       "--gin.slam_jax.bench.BenchConfig.timed_steps=2",
                       "--gin.slam_jax.bench.BenchConfig.num_microbatches=2"])
  data = json.loads(out.read_text())
  assert data["mode"] == "encoder" and report["mode"] == "encoder"
  assert data["peer_status"] == "PyTorch peer skipped: test" and "peer" not in data
  ours = data["ours"]
  assert len(ours["step_times_s"]) == 2
  for key in ("median_step_s", "examples_per_s", "audio_seconds_per_s", "mfu", "mfu_cpu_time"):
    assert np.isfinite(ours[key]) and ours[key] > 0, key
  assert ours["text_tokens_per_s"] == 0
  flops = data["flops"]
  assert flops["analytic_per_step"] > 0 and flops["xla_unrolled_step"] > 0
  assert 0.5 < flops["analytic_over_xla"] <= 1.0
  # Two microbatches reach the timed trainer's step.
  assert data["config"]["num_microbatches"] == 2
  assert 2 in built
  assert data["peak_flops"]["used"] > 0 and data["compile_seconds"] > 0
  assert data["memory"]["xla"]["total_bytes"] > 0 and data["memory"]["peak_rss_bytes"] > 0
  assert data["batch"]["examples"] == 2
  assert "slam_jax (JAX)" in bench.format_table(report)


def test_parse_args():
  peer, path, mode, files, bindings = bench.parse_args(
      ["--gin_file=a.gin", "--json", "o.json", "--peer", "--mode=memory", "--gin.X.y=3"])
  assert (peer, path, mode, files, bindings) == (True, "o.json", "memory", ["a.gin"],
                                                 ["X.y = 3"])
  with pytest.raises(ValueError, match="Unknown flag"):
    bench.parse_args(["--gin_file=a.gin", "--bogus"])
  with pytest.raises(ValueError, match="gin/bench"):
    bench.parse_args(["--peer"])


def test_bench_config_validates():
  with pytest.raises(ValueError, match="mode"):
    bench.BenchConfig(mode="train")
  with pytest.raises(ValueError, match="rows"):
    bench.BenchConfig(rows="text")
  with pytest.raises(ValueError, match="num_microbatches"):
    bench.BenchConfig(batch_size=8, num_microbatches=3)
