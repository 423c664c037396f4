"""Tests for slam_jax/checkpoints.py: round trip, fallback past a corrupt checkpoint, signals."""

import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax import checkpoints as checkpoints_lib


def _state(value: float):
  return {"params": {"w": jnp.full((4, 3), value, jnp.float32)}, "step": jnp.asarray(int(value))}


def _abstract(state):
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_round_trip_with_data_position(tmp_path):
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), checkpoints_lib.CheckpointConfig(
      save_every_steps=2, keep=2))
  assert not ckpt.save(1, _state(1.0), {"batches_consumed": 1})  # Not a save step.
  assert ckpt.save(2, _state(2.0), {"batches_consumed": 2})
  assert ckpt.save(3, _state(3.0), {"batches_consumed": 3}, force=True)
  ckpt.wait()
  step, state, data = ckpt.restore(_abstract(_state(0.0)))
  assert step == 3 and data["batches_consumed"] == 3
  np.testing.assert_array_equal(state["params"]["w"], np.full((4, 3), 3.0))
  ckpt.close()


def test_relative_directory_is_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  ckpt = checkpoints_lib.Checkpointer("run/checkpoints")
  assert ckpt.directory == str(tmp_path / "run" / "checkpoints")
  assert ckpt.save(2, _state(2.0), {"batches_consumed": 2}, force=True)
  ckpt.close()
  reader = checkpoints_lib.Checkpointer("run/checkpoints")  # orbax refuses relative paths
  step, state, _ = reader.restore_raw()
  assert step == 2 and float(np.asarray(state["params"]["w"])[0, 0]) == 2.0
  reader.close()


def test_keeps_only_the_newest(tmp_path):
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), checkpoints_lib.CheckpointConfig(
      save_every_steps=1, keep=2))
  for s in (1, 2, 3):
    ckpt.save(s, _state(float(s)), {"batches_consumed": s})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]
  ckpt.close()


def test_corrupt_latest_falls_back_with_warning(tmp_path, caplog):
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), checkpoints_lib.CheckpointConfig(
      save_every_steps=1, keep=3))
  ckpt.save(1, _state(1.0), {"batches_consumed": 1})
  ckpt.save(2, _state(2.0), {"batches_consumed": 2})
  ckpt.close()
  # Damage step 2: remove its array data but keep the directory (a half-deleted checkpoint).
  state_dir = os.path.join(tmp_path, "2", "state")
  for entry in os.listdir(state_dir):
    path = os.path.join(state_dir, entry)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif not entry.startswith("_CHECKPOINT_METADATA"):
      os.remove(path)
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path))
  with caplog.at_level("WARNING"):
    step, state, data = ckpt.restore(_abstract(_state(0.0)))
  assert step == 1 and data["batches_consumed"] == 1
  np.testing.assert_array_equal(state["params"]["w"], np.ones((4, 3)))
  assert any("unreadable" in r.getMessage() for r in caplog.records)
  ckpt.close()


def test_no_checkpoint_is_a_clear_error(tmp_path):
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path / "empty"))
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    ckpt.restore(_abstract(_state(0.0)))
  ckpt.close()


def test_stop_signal_sets_flag_and_restores_handler():
  previous = signal.getsignal(signal.SIGTERM)
  stop = checkpoints_lib.StopSignal()
  assert not stop.requested
  os.kill(os.getpid(), signal.SIGTERM)
  assert stop.requested and stop.signum == signal.SIGTERM
  stop.restore_handlers()
  assert signal.getsignal(signal.SIGTERM) is previous


def test_stop_signal_in_a_multi_process_job_follows_the_preemption_service(monkeypatch, caplog):
  """Several processes: should_stop(step) is True exactly where JAX's preemption sync point says
  (the same step on every process), a local SIGINT is passed on as SIGTERM once (the service's
  notice), and without the service a signal stops this process alone, with one warning."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top

  class SyncManager:  # The service: all processes agreed to stop after step 3.
    def reached_sync_point(self, step):
      return step == 3

  kills = []
  plain = checkpoints_lib.StopSignal(signals=())  # No jax.distributed: the flag alone.
  plain._handle(signal.SIGTERM, None)  # pylint: disable=protected-access
  assert plain.should_stop(0)
  # jax.distributed initialised (process count 2 here; one process, e.g. SLAM_DISTRIBUTED=auto on
  # a one-host slice, takes the same path: the service owns SIGTERM there too).
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(distributed.global_state, "client", object())
  monkeypatch.setattr(distributed.global_state, "preemption_sync_manager", SyncManager())
  monkeypatch.setattr(checkpoints_lib.os, "kill", lambda pid, sig: kills.append(sig))
  stop = checkpoints_lib.StopSignal(signals=())
  assert [stop.should_stop(s) for s in (0, 1, 2)] == [False] * 3 and not stop.requested
  assert stop.should_stop(3) and stop.requested and stop.signum == signal.SIGTERM
  assert kills == []  # The notice came from elsewhere: nothing to pass on.

  sigint = checkpoints_lib.StopSignal(signals=())
  sigint._handle(signal.SIGINT, None)  # pylint: disable=protected-access
  assert not sigint.should_stop(1) and not sigint.should_stop(2)  # Waits for the agreed step.
  assert kills == [signal.SIGTERM]  # ... having notified the service once.
  assert sigint.should_stop(3)

  monkeypatch.setattr(distributed.global_state, "preemption_sync_manager", None)
  alone = checkpoints_lib.StopSignal(signals=())
  assert not alone.should_stop(0)
  alone._handle(signal.SIGTERM, None)  # pylint: disable=protected-access
  assert alone.should_stop(1) and alone.should_stop(2)
  assert sum("preemption service is off" in r.getMessage() for r in caplog.records) == 1


class _CountingIterator:
  """A stand-in for pipeline.DataIterator: its state is one number in the saved files."""

  def __init__(self, position=0):
    self.position = position

  def save(self, prefix):
    for suffix in (".index", ".position"):
      with open(prefix + suffix, "w") as f:
        f.write(str(self.position))

  def restore(self, prefix):
    with open(prefix + ".position") as f:
      self.position = int(f.read())


def test_data_iterator_state_is_saved_per_process_and_restored(tmp_path):
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), checkpoints_lib.CheckpointConfig(
      save_every_steps=1, async_save=True))
  it = _CountingIterator(7)
  ckpt.save(1, _state(1.0), {"batches_consumed": 7}, data_iterator=it)
  it.position = 9  # Training goes on while the model arrays are written: state of step 1 kept.
  ckpt.save(2, _state(2.0), {"batches_consumed": 9})  # No iterator: no entry.
  ckpt.wait()
  entry = tmp_path / "1" / "data_iterator" / "process_00000-of-00001.position"
  assert entry.read_text() == "7"
  fresh = _CountingIterator()
  assert ckpt.restore_data_iterator(1, fresh) and fresh.position == 7
  assert not ckpt.restore_data_iterator(2, _CountingIterator())  # Falls back to skipping.
  assert not ckpt.restore_data_iterator(1, iter([]))  # Cannot restore itself.
  step, _, data = ckpt.restore(_abstract(_state(0.0)), step=1)  # Other items still restore.
  assert step == 1 and data["batches_consumed"] == 7
  ckpt.close()


def _truncate_largest_array_file(step_dir):
  """Cuts the biggest array data file of a checkpoint in half (a write cut short)."""
  files = [os.path.join(d, f) for d, _, names in os.walk(os.path.join(step_dir, "state"))
           for f in names if os.path.basename(d) == "d"]
  path = max(files, key=os.path.getsize)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  return path


def test_truncated_array_is_moved_aside_and_its_step_saved_again(tmp_path, caplog):
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), checkpoints_lib.CheckpointConfig(
      save_every_steps=1, keep=3, async_save=False))
  noise = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)  # Incompressible.
  big = lambda v: {"params": {"w": jnp.asarray(noise + v)}, "step": jnp.asarray(1)}
  ckpt.save(1, big(1.0), {"batches_consumed": 1})
  ckpt.save(2, big(2.0), {"batches_consumed": 2})
  ckpt.close()
  _truncate_largest_array_file(os.path.join(tmp_path, "2"))
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), checkpoints_lib.CheckpointConfig(
      save_every_steps=1, keep=3, async_save=False))
  with caplog.at_level("WARNING"):
    step, state, _ = ckpt.restore(_abstract(big(0.0)))
  assert step == 1
  np.testing.assert_array_equal(state["params"]["w"], noise + 1.0)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any("unreadable" in m for m in warnings) and all("\n" not in m for m in warnings)
  assert not any("bound method" in m for m in warnings)
  moved = [n for n in os.listdir(tmp_path) if n.startswith("2.corrupt-")]
  assert len(moved) == 1 and ckpt.all_steps() == [1]
  # The re-trained step 2 is saved (before the fix `save` skipped it: "step 2 exists").
  assert ckpt.save(2, big(5.0), {"batches_consumed": 2})
  ckpt.close()
  step, state, _ = checkpoints_lib.Checkpointer(str(tmp_path)).restore_raw()
  np.testing.assert_array_equal(state["params"]["w"], noise + 5.0)
  assert step == 2


def test_last_good_is_kept_outside_rotation(tmp_path):
  config = checkpoints_lib.CheckpointConfig(save_every_steps=1, keep=1, async_save=False)
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), config)
  ckpt.save(1, _state(1.0), {"batches_consumed": 1})
  ckpt.mark_good(1, {"loss": 2.0, "param_norm": 3.0})
  for s in (2, 3, 4):
    ckpt.save(s, _state(float(s)), {"batches_consumed": s})
  ckpt.close()
  ckpt = checkpoints_lib.Checkpointer(str(tmp_path), config)
  assert ckpt.all_steps() == [1, 4]
  assert ckpt.last_good() == {"loss": 2.0, "param_norm": 3.0, "step": 1}
  step, _, data = ckpt.restore(_abstract(_state(0.0)), step=1)
  assert step == 1 and data["batches_consumed"] == 1
  ckpt.supersede_after(1)  # --resume_step=1: the newer history is moved aside.
  assert ckpt.all_steps() == [1]
  assert any(n.startswith("4.superseded-") for n in os.listdir(tmp_path))
  with pytest.raises(FileNotFoundError, match="step 7"):
    ckpt.restore(_abstract(_state(0.0)), step=7)
  ckpt.close()


@pytest.mark.parametrize("kwargs,needle", [({"save_every_steps": 0}, "save_every_steps=0"),
                                           ({"keep": 0}, "keep=0")])
def test_config_values_are_checked(kwargs, needle):
  with pytest.raises(ValueError, match=needle):
    checkpoints_lib.CheckpointConfig(**kwargs)


def test_describe_error_is_one_line_with_the_cause():
  class Store:
    def read(self):
      pass
  try:
    try:
      raise OSError(28, "No space left on device: writing 'd/abc' of params.w")
    except OSError as inner:
      raise ValueError(f"Error writing\n  {Store().read!r}\n array") from inner
  except ValueError as e:
    line = checkpoints_lib.describe_error(e)
  assert "\n" not in line and "bound method" not in line
  assert line.startswith("OSError: [Errno 28] No space left on device") and "params.w" in line


_FULL_DISK_SCRIPT = """
import resource, signal, sys
import numpy as np, jax.numpy as jnp
from slam_jax import checkpoints as C
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Writes past the limit fail with EFBIG instead.
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
c = C.Checkpointer(sys.argv[1], C.CheckpointConfig(save_every_steps=1, async_save=True))
w = jnp.asarray(np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32))
try:
  c.save(1, {"w": w}, {"b": 1})
  c.close()
except C.CheckpointSaveError as e:
  print("SAVE FAILED:", e)
  sys.exit(3)
"""


def test_failed_save_is_one_line_not_hundreds_of_tracebacks(tmp_path):
  """A save that cannot write (a file-size limit standing in for a full disk)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path / "ck")], cwd=root,
                        env=env, capture_output=True, text=True, timeout=300)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 3, out
  assert "Traceback" not in out, out  # Before: two per array, ~100 lines each.
  line = next(l for l in out.splitlines() if l.startswith("SAVE FAILED:"))
  assert "File too large" in line and '"w/0.0"' in line
