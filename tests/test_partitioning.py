"""Sharded training equals one-device training (slam_jax/partitioning.py, trainer.py, train.py).

`slam_jax.train.train` runs two steps of gin/experiments/test_tiny.gin (every objective, dropout
on, two codebooks) on a (data 8) and a (data 2 x model 4) mesh of 8 simulated CPU devices in a
subprocess (XLA reads the device count when JAX starts), and on one device in the test's own
process: the step tests/test_train.py compiles too, so the reference usually costs no compile.
Losses and parameters must agree to float32 reduction-order noise. FSDP (data 4 x model 2) is
checked across two processes, with a checkpoint and a resume, by tests/test_multihost.py.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "gin", "experiments", "test_tiny.gin")
MESHES = ((8, 1), (2, 4))  # (data, model)


def _train(model_dir: str, data: int, model: int) -> list:
  """Two steps of the tiny experiment on a (data x model) mesh; returns their losses."""
  import gin  # pylint: disable=g-import-not-at-top
  from slam_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  train_lib.parse_gin([TINY], [f"MODEL_DIR = '{model_dir}'", "TRAIN_STEPS = 2",
                               f"slam_jax.partitioning.MeshConfig.data = {data}",
                               f"slam_jax.partitioning.MeshConfig.model = {model}"])
  try:
    return [h["loss"] for h in train_lib.train().history]
  finally:
    gin.clear_config()


def _final_state(model_dir: str):
  """(parameters as numpy, their checkpoint metadata): what the run trained and how it split it."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  from slam_jax import checkpoints as checkpoints_lib  # pylint: disable=g-import-not-at-top
  ckpt = checkpoints_lib.Checkpointer(os.path.join(model_dir, "checkpoints"))
  step, state, _ = ckpt.restore_raw()
  ckpt.close()
  assert step == 2, step
  meta = ocp.StandardCheckpointHandler().metadata(
      epath.Path(model_dir) / "checkpoints" / "2" / "state")
  return state["params"], getattr(meta, "tree", meta)["params"]


@pytest.mark.slow
def test_sharded_training_matches_one_device(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(tmp_path)], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  losses = json.loads(proc.stdout.strip().splitlines()[-1])

  ref_losses = _train(str(tmp_path / "1x1"), 1, 1)
  ref_params, _ = _final_state(str(tmp_path / "1x1"))
  for data, model in MESHES:
    name = f"{data}x{model}"
    assert len(losses[name]) == len(ref_losses) == 2, (name, losses, ref_losses)
    np.testing.assert_allclose(losses[name], ref_losses, rtol=2e-5, err_msg=name)
    params, meta = _final_state(str(tmp_path / name))
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), params, ref_params)
    # Two AdamW steps move each parameter by about twice the learning rate (3e-3); reductions in
    # another order may change a near-zero gradient's normalised update slightly.
    assert max(jax.tree_util.tree_leaves(diffs)) < 1e-4, (name, diffs)
    # The checkpoint records each array's layout: on (2 x 4) the tensor-parallel weights were
    # written in quarters along their 'model' dimension.
    if model > 1:
      assert any(axis == "model" and written * model == size
                 for m in jax.tree_util.tree_leaves(meta)
                 for axis, written, size in zip(m.sharding.partition_spec,
                                                m.storage.write_shape, m.shape)), name


if __name__ == "__main__":
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_threefry_partitionable", True)  # as tests/conftest.py sets it
  assert jax.device_count() == 8, jax.devices()
  print(json.dumps({f"{d}x{m}": _train(os.path.join(sys.argv[1], f"{d}x{m}"), d, m)
                    for d, m in MESHES}))
