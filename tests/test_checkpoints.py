"""Tests for slam_jax/checkpoints.py: round trip, fallback past a corrupt checkpoint, signals."""

import os
import shutil
import signal

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
