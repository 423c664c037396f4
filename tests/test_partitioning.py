"""Sharded train steps equal the single-device step (slam_jax/partitioning.py + trainer.py).

Two steps of tests/tiny_slam.py's model (every objective, dropout on, stage 2 from step 1) on a
(data 8) and a (data 2 x model 4) mesh of 8 simulated CPU devices, in a subprocess
(XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before JAX starts), against the
one-device run of the `tiny_slam_one_device` fixture, which the t5x tests compare with too.
FSDP (data 4 x model 2) is checked across two processes, with a checkpoint and a resume, by
tests/test_multihost.py.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import tiny_slam  # tests/tiny_slam.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESHES = [(8, 1), (2, 4)]  # (data, model)


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_slam")  # tiny_slam_one_device: computed once, on one worker
def test_sharded_train_steps_match_single_device(tiny_slam_one_device, tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  out = tmp_path / "sharded.pkl"
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(out, "rb") as f:
    runs = pickle.load(f)
  ref = tiny_slam_one_device
  ref_losses = [m["loss"] for m in ref["metrics"]]
  assert len(ref_losses) == 2 and ref["metrics"][1]["tlm/weight"] == 1.0  # stage 2 at step 1
  for name, run in runs.items():
    np.testing.assert_allclose([m["loss"] for m in run["metrics"]], ref_losses, rtol=2e-5,
                               err_msg=name)
    # Same init, then each AdamW step moves a parameter by about the learning rate (1e-3);
    # reductions in another order may change a near-zero gradient's normalised update slightly.
    for step, (params, ref_params) in enumerate(zip(run["params"], ref["params"])):
      diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), params,
                                     ref_params)
      assert max(jax.tree_util.tree_leaves(diffs)) < 1e-5, (name, step, diffs)
  assert runs["2x4"]["sharded"]  # Parameters really are split across devices.


if __name__ == "__main__":
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_threefry_partitionable", True)  # as tests/conftest.py sets it
  assert jax.device_count() == 8, jax.devices()
  results = {f"{d}x{m}": tiny_slam.train(d, m) for d, m in MESHES}
  with open(sys.argv[1], "wb") as f:
    pickle.dump(results, f)
