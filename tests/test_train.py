"""Tests for slam_jax/train.py: the real entry point on gin/experiments/test_tiny.gin.

Covers: the loss falls, stop-and-resume in a new process equals an uninterrupted run, SIGTERM
leaves a restorable checkpoint and exits with PREEMPTED_EXIT_CODE, NaN batches are skipped (and
too many stop the run), bad gin bindings fail before compilation, and existing checkpoints are
never silently overwritten. The fault tests listed in docs/failure_modes.md are here too.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

from slam_jax import checkpoints as checkpoints_lib
from slam_jax import run_lock
from slam_jax import train as train_lib
from slam_jax import trainer as trainer_lib

import tiny_demo  # tests/tiny_demo.py

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
  result = _run(str(tmp_path / "run"), "TRAIN_STEPS = 40",
                "slam_jax.data.synthetic.make_synthetic_data.fixed_batch = True",
                "slam_jax.checkpoints.CheckpointConfig.save_every_steps = 100")
  losses = [h["loss"] for h in result.history]
  assert len(losses) == 40
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
  assert os.path.exists(os.path.join(result.model_dir, "config.gin"))
  assert "make_model" in open(os.path.join(result.model_dir, "config.gin")).read()
  summary = train_lib.summarize(result)
  assert "first 4 steps" in summary and result.checkpoint_dir in summary


def test_sigterm_then_resume_in_another_process_matches_straight_run(tmp_path, capsys):
  """A run SIGTERMed after step 3 exits with PREEMPTED_EXIT_CODE and leaves a restorable
  checkpoint of the step it reached; resumed in another process (this one) for two more steps,
  it ends bit-identical to an uninterrupted run of as many steps."""
  split = str(tmp_path / "split")
  proc = _cli(split, "--gin.TRAIN_STEPS=100000",
              "--gin.slam_jax.checkpoints.CheckpointConfig.save_every_steps=100000")
  lines = []
  for line in proc.stdout:  # Blocks until the run prints its first progress line.
    lines.append(line)
    if line.startswith("step 3/"):
      proc.send_signal(signal.SIGTERM)
      break
  out, _ = proc.communicate(timeout=300)
  out = "".join(lines) + out
  # Not 0: a scheduler that restarts only failed jobs must restart a preempted one.
  assert proc.returncode == train_lib.PREEMPTED_EXIT_CODE, out
  assert "stopped by signal" in out
  stopped, restored = _restore_params(split)
  assert 3 <= stopped < 100000
  assert restored["data"]["batches_consumed"] == stopped

  capsys.readouterr()
  resumed = _run(split, f"TRAIN_STEPS = {stopped + 2}", resume=True)
  assert f"data position: {stopped} batches" in capsys.readouterr().out
  straight = _run(str(tmp_path / "straight"), f"TRAIN_STEPS = {stopped + 2}")
  step_a, a = _restore_params(str(tmp_path / "straight"))
  step_b, b = _restore_params(split)
  assert step_a == step_b == stopped + 2
  assert a["data"]["batches_consumed"] == b["data"]["batches_consumed"] == stopped + 2
  leaves_a = jax.tree_util.tree_leaves(a["state"]["params"])
  leaves_b = jax.tree_util.tree_leaves(b["state"]["params"])
  assert len(leaves_a) == len(leaves_b) > 10
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal([h["loss"] for h in resumed.history],
                                [h["loss"] for h in straight.history[stopped:]])


def test_runs_of_one_experiment_share_the_compiled_step(tmp_path):
  """A second train() of the same experiment in this process, with another TRAIN_STEPS (the rsqrt
  schedule does not depend on it), compiles nothing new: it takes the first run's programs."""
  _run(str(tmp_path / "a"), "TRAIN_STEPS = 2")
  programs = dict(trainer_lib._PROGRAMS)  # pylint: disable=protected-access
  assert any(key[0] == ("step", 6) for key in programs), list(programs)
  # stop_at_step: stops early with a checkpoint of the step it stopped at.
  result = _run(str(tmp_path / "b"), "TRAIN_STEPS = 3", "slam_jax.train.train.stop_at_step = 2")
  assert dict(trainer_lib._PROGRAMS) == programs  # pylint: disable=protected-access
  assert result.last_step == 2 and np.isfinite(result.last_metrics["loss"])
  assert _restore_params(str(tmp_path / "b"))[0] == 2


def test_existing_checkpoints_need_resume(tmp_path):
  model_dir = str(tmp_path / "run")
  _run(model_dir, "TRAIN_STEPS = 1")
  with pytest.raises(FileExistsError, match="--resume"):
    _run(model_dir, "TRAIN_STEPS = 2")


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
  assert files == ["a.gin"] and bindings == ["TRAIN_STEPS = 5"] and resume is True
  assert train_lib.parse_flags(["--gin_file=a.gin", "--resume_step=40", "--resume"])[2] == 40
  with pytest.raises(ValueError, match="step number"):
    train_lib.parse_flags(["--gin_file=a.gin", "--resume_step=last"])
  with pytest.raises(ValueError, match="--gin.TRAIN_STEPS=VALUE"):
    train_lib.parse_flags(["--gin_file=a.gin", "--gin.TRAIN_STEPS"])
  with pytest.raises(ValueError, match="Unknown flag"):
    train_lib.parse_flags(["--gin_file=a.gin", "--bogus"])


@pytest.mark.slow
@pytest.mark.xdist_group("demo_mixture_step")  # compiles the multi-host test's reference step
def test_demo_mixture_trains_and_resumes_bit_identically(demo_tasks, tmp_path, capsys):
  """slam_demo_tiny.gin on the tiny eSpeak corpus (seqio mixture -> converter -> steps): 4
  straight steps saving at 2; a copy of step 2 resumed to 4 (the tf.data iterator state
  restored from the orbax checkpoint, not skipped) gives the same losses and parameters.
  One test, so the two runs share one compiled step; batch 8, as the multi-host test's
  single-device reference, which then finds this step compiled (tests/test_multihost.py)."""
  import shutil  # pylint: disable=g-import-not-at-top

  def run(model_dir, resume=False):
    gin.clear_config()
    try:
      train_lib.parse_gin(
          [os.path.join(ROOT, "gin", "experiments", "slam_demo_tiny.gin")],
          [f"MODEL_DIR = '{model_dir}'", "TRAIN_STEPS = 4", "BATCH_SIZE = 8",
           *tiny_demo.MODEL_BINDINGS,
           "slam_jax.train.train.measure_peak = False",
           "slam_jax.checkpoints.CheckpointConfig.save_every_steps = 2"])
      return train_lib.train(resume=resume)
    finally:
      gin.clear_config()

  straight = run(tmp_path / "straight")
  assert straight.last_step == 4
  kinds = sum(h["examples/text"] + h["examples/speech"] + h["examples/paired"]
              for h in straight.history)
  assert kinds == 4 * 8
  assert straight.history[0]["examples/speech"] + straight.history[0]["examples/paired"] > 0
  assert np.isfinite(straight.last_metrics["loss"])

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


@pytest.fixture()
def no_compile(monkeypatch):
  """Fails the test if the train step gets compiled: configuration errors must come first."""
  def compile_(*_):
    raise AssertionError("compiled before the configuration error was found")
  monkeypatch.setattr(trainer_lib.PartitionedTrainer, "compile", compile_)


@pytest.mark.parametrize("binding,needle", [
    ("TRAIN_STEP = 5", "did you mean TRAIN_STEPS"),  # A misspelt macro used to be ignored.
    ("TRAIN_STEPS = (1,", r"'TRAIN_STEPS = \(1,'"),  # Was a raw tokenize.TokenError.
])
def test_bad_override_names_the_binding(binding, needle):
  gin.clear_config()
  try:
    with pytest.raises(ValueError, match=needle):
      train_lib.parse_gin([TINY], ["MODEL_DIR = '/nonexistent'", binding])
  finally:
    gin.clear_config()


@pytest.mark.parametrize("binding,needle", [
    ("slam_jax.checkpoints.CheckpointConfig.save_every_steps = 0", "save_every_steps=0"),
    ("TRAIN_STEPS = 0", "TRAIN_STEPS=0"),
    ("slam_jax.train.train.log_every = 0", "log_every=0"),
    ("BATCH_SIZE = 7", "divisible"),  # Not a multiple of... num_microbatches = 2 below.
])
def test_bad_values_fail_before_compiling(tmp_path, no_compile, binding, needle):
  del no_compile
  with pytest.raises(ValueError, match=needle):
    _run(str(tmp_path / "run"), "slam_jax.train.train.num_microbatches = 2", binding)


def test_unknown_mixture_fails_before_compiling(tmp_path, no_compile):
  del no_compile
  gin.clear_config()
  try:
    train_lib.parse_gin([os.path.join(ROOT, "gin", "experiments", "slam_demo_tiny.gin")],
                        [f"MODEL_DIR = '{tmp_path}'", "MIXTURE_OR_TASK_NAME = 'no_such_mix'"])
    with pytest.raises(ValueError, match="no_such_mix"):
      train_lib.train()
  finally:
    gin.clear_config()


def test_live_lock_holder_is_refused_before_compiling(tmp_path, no_compile):
  del no_compile
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  with open(model_dir / run_lock.LOCK_NAME, "w") as f:  # Our parent: alive, on this host.
    json.dump({"host": socket.gethostname(), "pid": os.getppid()}, f)
  with pytest.raises(run_lock.ModelDirLocked, match=f"host {socket.gethostname()} pid"):
    _run(str(model_dir))


def test_signal_before_the_first_step_stops_cleanly(tmp_path, monkeypatch):
  """The handler is installed first: a SIGTERM during compilation stops without a traceback."""
  def not_installed(*_):
    raise AssertionError("SIGTERM reached the default handler: train() installs its own too late")
  previous = signal.signal(signal.SIGTERM, not_installed)
  original = trainer_lib.PartitionedTrainer.compile
  def compile_and_get_preempted(self, *args):
    os.kill(os.getpid(), signal.SIGTERM)
    return original(self, *args)
  monkeypatch.setattr(trainer_lib.PartitionedTrainer, "compile", compile_and_get_preempted)
  try:
    result = _run(str(tmp_path / "run"))
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert result.stopped_by_signal and result.last_step == 0
  assert train_lib.exit_code(result) == train_lib.PREEMPTED_EXIT_CODE
  assert not os.path.exists(os.path.join(result.checkpoint_dir, "0"))


def _truncate_array_file(step_dir):
  files = [os.path.join(d, f) for d, _, names in os.walk(os.path.join(step_dir, "state"))
           for f in names if os.path.basename(d) == "d"]
  path = max(files, key=os.path.getsize)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def test_corrupt_final_step_is_replaced_and_resume_checks_settings(tmp_path, capsys):
  model_dir = str(tmp_path / "run")
  _run(model_dir, "TRAIN_STEPS = 4", resume=True)  # --resume on an empty dir: a notice.
  assert "no checkpoint under" in capsys.readouterr().out
  _truncate_array_file(os.path.join(model_dir, "checkpoints", "4"))
  # Different seed or batch size: refused before training (the data order would not continue).
  with pytest.raises(ValueError, match="seed: saved 0, now 1.*batch_size: saved 6, now 12"):
    _run(model_dir, "TRAIN_STEPS = 4", "SEED = 1", "BATCH_SIZE = 12", resume=True)
  result = _run(model_dir, "TRAIN_STEPS = 4", resume=True)
  # Fell back to step 2, re-trained 3 and 4, and saved the final step 4 again (before the fix,
  # "finished" was printed but step 4 stayed the corrupt one, on every retry).
  assert [h["step"] for h in result.history] == [3, 4]
  assert len(glob.glob(os.path.join(model_dir, "checkpoints", "4.corrupt-*"))) == 1
  step, restored = _restore_params(model_dir)
  assert step == 4 and restored["data"]["batches_consumed"] == 4
  assert restored["data"]["batch_size"] == 6 and restored["data"]["seed"] == 0
  configs = sorted(os.listdir(model_dir))
  assert "config.gin" in configs and any(c.startswith("config.resume-2-") for c in configs)


class _Marks:
  """What HealthTracker tells the checkpointer: the steps it marks last-known-good."""

  def __init__(self):
    self.good = []

  def mark_good(self, step, info):
    self.good.append((step, info["loss"]))


def test_health_tracker_judges_checkpoints_by_the_steps_around_them():
  metrics = lambda step, loss, pnorm=1.0: {"step": step, "loss": loss, "param_norm": pnorm,
                                           "nonfinite": int(not np.isfinite(loss))}
  tracker, marks = train_lib.HealthTracker(ratio=10.0), _Marks()
  for step, loss in ((1, 2.0), (2, 1.5)):
    tracker.observe(metrics(step, loss), marks)
  tracker.saved(2, metrics(2, 1.5))
  assert marks.good == []  # judged on step 3, the first loss computed with its parameters
  tracker.observe(metrics(3, 1.4), marks)
  assert marks.good == [(2, 1.5)]
  # Loss above 10x the last good checkpoint's (1.5): the window's checkpoint is not a candidate.
  tracker.observe(metrics(4, 15.5), marks)
  assert "above 10x the last good (1.5 / 1)" in tracker.last_reason
  tracker.saved(4, metrics(4, 15.5))
  # A healthy window, but the step after the save has a parameter norm above 10x: not kept.
  tracker.observe(metrics(5, 1.0), marks)
  tracker.saved(5, metrics(5, 1.0))
  tracker.observe(metrics(6, 1.0, pnorm=10.5), marks)
  # A non-finite step inside the window.
  tracker.observe(metrics(7, float("nan")), marks)
  assert "non-finite" in tracker.last_reason
  tracker.saved(7, metrics(7, float("nan")))
  tracker.observe(metrics(8, 1.2), marks)
  tracker.saved(8, metrics(8, 1.2))
  tracker.finish(marks)  # the final checkpoint, judged on the steps up to it
  assert marks.good == [(2, 1.5), (8, 1.2)]


def test_divergence_leaves_a_last_known_good_checkpoint(tmp_path):
  """Steps 7 and 8 of the resumed run see NaN batches (batch i feeds step i + 1): the step-6
  checkpoint is saved but not judged good, and two bad steps in a row stop the run. (The same
  step program as the other test_tiny runs; the loss/norm ratio judge is tested just above.)"""
  model_dir = str(tmp_path / "run")
  keep1 = "slam_jax.checkpoints.CheckpointConfig.keep = 1"
  _run(model_dir, "TRAIN_STEPS = 4", keep1)
  with pytest.raises(train_lib.TrainingDiverged, match="--resume_step=4") as err:
    _run(model_dir, "TRAIN_STEPS = 12", keep1, "slam_jax.train.train.max_bad_steps = 2",
         "slam_jax.data.synthetic.make_synthetic_data.nan_at_batches = (6, 7)", resume=True)
  assert "last-known-good checkpoint (step 4" in str(err.value)
  ckpt = checkpoints_lib.Checkpointer(os.path.join(model_dir, "checkpoints"))
  assert ckpt.last_good()["step"] == 4 and 4 in ckpt.all_steps()  # Outside keep=1 rotation.
  assert max(ckpt.all_steps()) > 4
  ckpt.close()
  # The advice works: --resume_step=4 restores step 4 and moves the diverged steps aside.
  result = _run_resume_step(model_dir, 4, "TRAIN_STEPS = 5", keep1)
  assert [h["step"] for h in result.history] == [5] and np.isfinite(result.last_metrics["loss"])
  assert glob.glob(os.path.join(model_dir, "checkpoints", "*.superseded-*"))


def _run_resume_step(model_dir, step, *bindings):
  gin.clear_config()
  train_lib.parse_gin([TINY], [f"MODEL_DIR = '{model_dir}'", *bindings])
  try:
    return train_lib.train(resume=True, resume_step=step)
  finally:
    gin.clear_config()


def test_kill9_resumes_from_the_newest_complete_step(tmp_path):
  """kill -9 mid-run leaves a dead lock holder and maybe a partial *.orbax-checkpoint-tmp dir."""
  model_dir = str(tmp_path / "run")
  proc = _cli(model_dir, "--gin.TRAIN_STEPS=100000",
              "--gin.slam_jax.checkpoints.CheckpointConfig.save_every_steps=1")
  for line in proc.stdout:
    if line.startswith("step 3/"):
      proc.kill()
      break
  proc.communicate(timeout=60)
  ckpt_dir = os.path.join(model_dir, "checkpoints")
  assert os.path.exists(os.path.join(model_dir, run_lock.LOCK_NAME))  # Left by the dead run.
  steps = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
  newest = steps[-1]
  # A save cut short by the kill: orbax's temporary name for a step newer than any complete one.
  partial = os.path.join(ckpt_dir, f"{newest + 1}.orbax-checkpoint-tmp-1234")
  shutil.copytree(os.path.join(ckpt_dir, str(newest)), partial)
  os.remove(os.path.join(partial, "commit_success.txt"))
  result = _run(model_dir, f"TRAIN_STEPS = {newest + 1}", resume=True)
  assert [h["step"] for h in result.history] == [newest + 1]
  step, restored = _restore_params(model_dir)
  assert step == newest + 1 and restored["data"]["batches_consumed"] == newest + 1


def test_refused_iterator_state_falls_back_to_skipping_with_one_warning(caplog):
  """A checkpoint whose input-iterator state the current pipeline cannot take (saved by another
  slam_jax version) resumes by skipping, with one warning; other errors still propagate."""
  from slam_jax.data import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top

  class Refusing:
    def __init__(self, error):
      self.error = error

    def restore_data_iterator(self, step, data):
      raise self.error

  mismatch = pipeline_lib.IteratorStateMismatch("ckpt/7/data_iterator: does not fit")
  train_lib._restore_data_iterator(Refusing(mismatch), 7, object())  # pylint: disable=protected-access
  warnings = [r for r in caplog.records if "does not fit" in r.getMessage()]
  assert len(warnings) == 1 and "skips to the checkpoint's position" in warnings[0].getMessage()
  with pytest.raises(ValueError, match="resumes at 4"):
    train_lib._restore_data_iterator(  # pylint: disable=protected-access
        Refusing(ValueError("holds the position after 2 batches but the run resumes at 4")), 7,
        object())
