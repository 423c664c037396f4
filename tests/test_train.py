"""Tests for slam_jax/train.py: the real entry point on gin/experiments/test_tiny.gin.

Covers: the loss falls, stop-and-resume in a new process equals an uninterrupted run, SIGTERM
leaves a restorable checkpoint, NaN batches are skipped (and too many stop the run), bad gin
bindings fail before compilation, and existing checkpoints are never silently overwritten.
"""

import os
import signal
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

from slam_jax import checkpoints as checkpoints_lib
from slam_jax import train as train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "gin", "experiments", "test_tiny.gin")


def _run(model_dir, *bindings, resume=False):
  gin.clear_config()
  train_lib.parse_gin([TINY], [f"MODEL_DIR = '{model_dir}'", *bindings])
  try:
    return train_lib.train(resume=resume)
  finally:
    gin.clear_config()


def _cli(model_dir, *flags, **popen_kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "slam_jax.train", f"--gin_file={TINY}",
         f"--gin.MODEL_DIR='{model_dir}'", *flags]
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **popen_kwargs)


def _restore_params(model_dir):
  ckpt = checkpoints_lib.Checkpointer(os.path.join(model_dir, "checkpoints"))
  step, state, data = ckpt.restore_raw()
  ckpt.close()
  return step, {"state": state, "data": data}


def test_loss_falls(tmp_path):
  result = _run(str(tmp_path / "run"), "TRAIN_STEPS = 25", "LEARNING_RATE = 3e-3",
                "slam_jax.data.synthetic.make_synthetic_data.fixed_batch = True",
                "slam_jax.checkpoints.CheckpointConfig.save_every_steps = 100")
  losses = [h["loss"] for h in result.history]
  assert len(losses) == 25
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
  assert os.path.exists(os.path.join(result.model_dir, "config.gin"))
  assert "make_model" in open(os.path.join(result.model_dir, "config.gin")).read()
  summary = train_lib.summarize(result)
  assert "first 2 steps" in summary and result.checkpoint_dir in summary


def test_stop_and_resume_in_new_process_matches_straight_run(tmp_path):
  straight = str(tmp_path / "straight")
  split = str(tmp_path / "split")
  r_straight = _run(straight, "TRAIN_STEPS = 4")
  r_half = _run(split, "TRAIN_STEPS = 4", "slam_jax.train.train.stop_at_step = 2")
  assert r_half.last_step == 2
  proc = _cli(split, "--gin.TRAIN_STEPS=4", "--resume")
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  assert "resumed from" in out and "data position: 2 batches" in out
  step_a, a = _restore_params(straight)
  step_b, b = _restore_params(split)
  assert step_a == step_b == 4
  assert a["data"]["batches_consumed"] == b["data"]["batches_consumed"] == 4
  leaves_a = jax.tree_util.tree_leaves(a["state"]["params"])
  leaves_b = jax.tree_util.tree_leaves(b["state"]["params"])
  assert len(leaves_a) == len(leaves_b) > 10
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)
  # The resumed half logged steps 3 and 4 with the same losses as the straight run.
  resumed_losses = [float(line.split("| loss ")[1].split(" ")[0])
                    for line in out.splitlines() if line.startswith("step ")]
  np.testing.assert_allclose(resumed_losses, [h["loss"] for h in r_straight.history[2:]],
                             rtol=1e-4)


def test_existing_checkpoints_need_resume(tmp_path):
  model_dir = str(tmp_path / "run")
  _run(model_dir, "TRAIN_STEPS = 1")
  with pytest.raises(FileExistsError, match="--resume"):
    _run(model_dir, "TRAIN_STEPS = 2")


def test_sigterm_leaves_a_restorable_checkpoint(tmp_path):
  model_dir = str(tmp_path / "run")
  proc = _cli(model_dir, "--gin.TRAIN_STEPS=100000",
              "--gin.slam_jax.checkpoints.CheckpointConfig.save_every_steps=100000")
  lines = []
  for line in proc.stdout:  # Blocks until the run prints its first progress line.
    lines.append(line)
    if line.startswith("step 3/"):
      proc.send_signal(signal.SIGTERM)
      break
  out, _ = proc.communicate(timeout=300)
  out = "".join(lines) + out
  assert proc.returncode == 0, out
  assert "stopped by signal" in out
  step, restored = _restore_params(model_dir)
  assert 3 <= step < 100000
  assert restored["data"]["batches_consumed"] == step


def test_nan_batch_is_skipped_and_counted(tmp_path):
  result = _run(str(tmp_path / "run"), "TRAIN_STEPS = 4",
                "slam_jax.data.synthetic.make_synthetic_data.nan_at_batches = (1,)")
  assert result.last_step == 4
  assert [int(h["nonfinite"]) for h in result.history] == [0, 1, 0, 0]
  assert result.skipped_steps == 1
  assert np.isfinite(result.last_metrics["loss"])


def test_consecutive_nan_batches_stop_with_clear_error(tmp_path):
  with pytest.raises(train_lib.TrainingDiverged, match="max_bad_steps=2"):
    _run(str(tmp_path / "run"), "TRAIN_STEPS = 6", "slam_jax.train.train.max_bad_steps = 2",
         "slam_jax.data.synthetic.make_synthetic_data.nan_at_batches = (0, 1, 2, 3)")


@pytest.mark.parametrize("binding,needle", [
    ("slam_jax.train.train.no_such_arg = 1", "no_such_arg"),
    ("NoSuchConfigurable.x = 1", "NoSuchConfigurable"),
    ("slam_jax.train.train.batch_size = ", "batch_size"),
])
def test_bad_gin_binding_fails_before_compiling(binding, needle):
  gin.clear_config()
  try:
    with pytest.raises(ValueError, match=needle):
      train_lib.parse_gin([TINY], ["MODEL_DIR = '/nonexistent'", binding])
  finally:
    gin.clear_config()


def test_flag_parsing():
  files, bindings, resume = train_lib.parse_flags(
      ["--gin_file=a.gin", "--gin.TRAIN_STEPS=5", "--resume"])
  assert files == ["a.gin"] and bindings == ["TRAIN_STEPS = 5"] and resume
  with pytest.raises(ValueError, match="--gin.TRAIN_STEPS=VALUE"):
    train_lib.parse_flags(["--gin_file=a.gin", "--gin.TRAIN_STEPS"])
  with pytest.raises(ValueError, match="Unknown flag"):
    train_lib.parse_flags(["--gin_file=a.gin", "--bogus"])


def test_demo_mixture_trains_through_the_real_pipeline(demo_tasks, tmp_path):
  """slam_demo_tiny.gin on the tiny eSpeak corpus: seqio mixture -> converter -> two steps."""
  gin.clear_config()
  try:
    train_lib.parse_gin(
        [os.path.join(ROOT, "gin", "experiments", "slam_demo_tiny.gin")],
        [f"MODEL_DIR = '{tmp_path / 'demo'}'", "TRAIN_STEPS = 2", "BATCH_SIZE = 6",
         "slam_jax.models.encoder.make_encoder_config.vocab_size = 256",
         "slam_jax.train.train.measure_peak = False"])
    result = train_lib.train()
  finally:
    gin.clear_config()
  assert result.last_step == 2
  kinds = sum(h["examples/text"] + h["examples/speech"] + h["examples/paired"]
              for h in result.history)
  assert kinds == 12
  assert result.history[0]["examples/speech"] + result.history[0]["examples/paired"] > 0
  assert np.isfinite(result.last_metrics["loss"])


@pytest.mark.slow
def test_demo_mixture_resumes_bit_identically_from_the_saved_iterator(demo_tasks, tmp_path,
                                                                      capsys):
  """4 straight steps saving at 2; a copy of step 2 resumed to 4 (the tf.data iterator state
  restored from the orbax checkpoint, not skipped) gives the same losses and parameters."""
  import shutil  # pylint: disable=g-import-not-at-top

  def run(model_dir, resume=False):
    gin.clear_config()
    try:
      train_lib.parse_gin(
          [os.path.join(ROOT, "gin", "experiments", "slam_demo_tiny.gin")],
          [f"MODEL_DIR = '{model_dir}'", "TRAIN_STEPS = 4", "BATCH_SIZE = 4",
           "slam_jax.models.encoder.make_encoder_config.vocab_size = 256",
           "slam_jax.train.train.measure_peak = False",
           "slam_jax.checkpoints.CheckpointConfig.save_every_steps = 2"])
      return train_lib.train(resume=resume)
    finally:
      gin.clear_config()

  straight = run(tmp_path / "straight")
  step2 = tmp_path / "straight" / "checkpoints" / "2"
  entry = step2 / "data_iterator" / "process_00000-of-00001"
  assert os.path.exists(f"{entry}.index") and open(f"{entry}.position").read() == "2"
  shutil.copytree(step2, tmp_path / "split" / "checkpoints" / "2")
  capsys.readouterr()
  resumed = run(tmp_path / "split", resume=True)
  assert "restored the input iterator state of step 2" in capsys.readouterr().out
  np.testing.assert_array_equal([h["loss"] for h in resumed.history],
                                [h["loss"] for h in straight.history[2:]])
  _, a = _restore_params(str(tmp_path / "straight"))
  _, b = _restore_params(str(tmp_path / "split"))
  jax.tree_util.tree_map(np.testing.assert_array_equal, a["state"]["params"], b["state"]["params"])
