"""Two processes on localhost train, are preempted, resume and match one single-device run.

The multi-host path end to end on the tiny demo corpus: `jax.distributed` with a local
coordinator (SLAM_DISTRIBUTED), 4 simulated CPU devices per process, a (data 4 x model 2) FSDP
mesh spanning both (the data axis crosses the processes, so parameters and optimizer moments are
split between them and each checkpoint is written and read in pieces), each process reading its
own seqio shard of the mixture (its half of every global batch) and saving its own tf.data
iterator entry in each orbax checkpoint. A preemption notice (SIGTERM) to one process after step
2 stops both after the same step, with a checkpoint; a restart of both with --resume trains two
more steps. The reference is this test's own process on one device, whose iterator concatenates
the two shards' batches in process order (what the 2-process global batch is). Losses and
parameters must agree to float32 reduction-order noise.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from slam_jax import train as train_lib

import tiny_demo  # tests/tiny_demo.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN = "gin/experiments/slam_demo_tiny.gin"
# The tiny encoder and short rows (the demo experiment's own sizes take minutes to compile here).
BINDINGS = ["BATCH_SIZE = 8", *tiny_demo.MODEL_BINDINGS,
            "slam_jax.partitioning.MeshConfig.model = 2",
            "slam_jax.partitioning.MeshConfig.fsdp = True",
            "slam_jax.train.train.measure_peak = False", "slam_jax.train.train.log_every = 1",
            "slam_jax.checkpoints.CheckpointConfig.save_every_steps = 2",
            "slam_jax.checkpoints.CheckpointConfig.async_save = False"]

class TwoShards:
  """The reference's data: the two processes' seqio shards, each half a batch, concatenated."""

  def __init__(self, *, batch_size, shard_info, **kwargs):
    from slam_jax.data import pipeline  # pylint: disable=g-import-not-at-top
    import seqio  # pylint: disable=g-import-not-at-top
    assert shard_info.num_shards == 1, shard_info
    self.shards = [pipeline.make_train_iterator(batch_size=batch_size // 2,
                                                shard_info=seqio.ShardInfo(i, 2), **kwargs)
                   for i in range(2)]

  def __iter__(self):
    return self

  def __next__(self):
    parts = [next(s) for s in self.shards]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# `python -m slam_jax.train` with every process writing its own entries to XLA's persistent cache:
# JAX writes from process 0 only, and the processes' keys differ (each hashes its own topology),
# so the restarted process 1 compiled the step again (~25 CPU-s) while process 0 loaded it.
_TRAIN_MAIN = textwrap.dedent("""
    import runpy
    from jax._src import compiler, distributed
    write = compiler._cache_write
    def write_from_any_process(*args, **kwargs):
      process_id, distributed.global_state.process_id = distributed.global_state.process_id, 0
      try:
        return write(*args, **kwargs)
      finally:
        distributed.global_state.process_id = process_id
    compiler._cache_write = write_from_any_process
    runpy.run_module("slam_jax.train", run_name="__main__")
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(corpus, devices, distributed=None):
  flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             SLAM_DATA_DIR=corpus, PYTHONPATH=ROOT)
  if distributed:
    env["SLAM_DISTRIBUTED"] = distributed
  return env


def _two_processes(corpus, model_dir, steps, resume=False, preempt_after=None):
  """Both processes of one run; returns their outputs. With `preempt_after`, the run is open-ended
  and process 1 gets SIGTERM once process 0 has printed that step: both must exit preempted."""
  port = _free_port()
  cmd = [sys.executable, "-c", _TRAIN_MAIN, f"--gin_file={GIN}",
         f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}"]
  cmd += [f"--gin.{b.replace(' = ', '=')}" for b in BINDINGS] + (["--resume"] if resume else [])
  # Process 0's output is read as it comes (the step to preempt after); process 1's goes to a file.
  with open(model_dir + ".process_1.log", "w+") as log:
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(corpus, 4, f"localhost:{port},2,{i}"),
                              stdout=subprocess.PIPE if i == 0 else log, stderr=subprocess.STDOUT,
                              text=True)
             for i in range(2)]
    head = ""
    if preempt_after is not None:
      for line in procs[0].stdout:  # Blocks until process 0 prints its next line.
        head += line
        if line.startswith(f"step {preempt_after}/"):
          procs[1].send_signal(signal.SIGTERM)
          break
    try:  # A notice that does not stop both leaves them training (or one waiting on the other).
      outs = [head + procs[0].communicate(timeout=900 if preempt_after is None else 300)[0]]
      procs[1].wait(timeout=60)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise AssertionError(f"the processes did not stop:\n{head[-3000:]}") from None
    log.seek(0)
    outs.append(log.read())
  want = 0 if preempt_after is None else train_lib.PREEMPTED_EXIT_CODE
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == want, f"process {i}: exit {p.returncode}, not {want}\n{out[-4000:]}"
  return outs


def _losses(out):
  return [float(line.split("| loss ")[1].split(" ")[0])
          for line in out.splitlines() if line.startswith("step ")]


def _reference(corpus, model_dir, steps):
  """The same steps in this process on one device (the demo-mixture test compiles this step
  too: same experiment, bindings and batch size), on the demo tasks as the processes register
  them (SLAM_DATA_DIR, default shuffle buffers)."""
  import gin  # pylint: disable=g-import-not-at-top
  from tasks import demo  # pylint: disable=g-import-not-at-top
  demo.register_demo_tasks(corpus)
  gin.clear_config()
  try:
    train_lib.parse_gin([os.path.join(ROOT, GIN)], BINDINGS + [
        f"MODEL_DIR = '{model_dir}'", f"TRAIN_STEPS = {steps}",
        "slam_jax.partitioning.MeshConfig.model = 1",
        "slam_jax.partitioning.MeshConfig.fsdp = False"])
    return [h["loss"] for h in train_lib.train(make_data=TwoShards).history]
  finally:
    gin.clear_config()


@pytest.mark.slow
@pytest.mark.xdist_group("demo_mixture_step")  # the reference's step: see _reference
def test_preempted_processes_resume_and_match_one_device(tiny_corpus, tmp_path):
  from slam_jax import checkpoints as checkpoints_lib  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "multihost")
  first = _two_processes(tiny_corpus, model_dir, 100000, preempt_after=2)
  assert all("(stopped by signal)" in out for out in first), first[1][-3000:]
  # Both stopped after the same step and saved it, each process its own iterator entry.
  stopped = len(_losses(first[0]))
  steps = sorted(int(n) for n in os.listdir(os.path.join(model_dir, "checkpoints")) if n.isdigit())
  assert stopped >= 2 and steps[-1] == stopped, (stopped, steps)
  entries = os.listdir(os.path.join(model_dir, "checkpoints", str(stopped), "data_iterator"))
  assert {e.split(".")[0] for e in entries if e.startswith("process_")} == {
      "process_00000-of-00002",
      "process_00001-of-00002"}, entries
  second = _two_processes(tiny_corpus, model_dir, stopped + 2, resume=True)
  assert all(f"restored the input iterator state of step {stopped}" in out for out in second), (
      second[0])

  ref_losses = _reference(tiny_corpus, str(tmp_path / "reference"), stopped + 2)
  multi_losses = _losses(first[0]) + _losses(second[0])
  assert len(multi_losses) == len(ref_losses) == stopped + 2, (multi_losses, ref_losses)
  np.testing.assert_allclose(multi_losses, ref_losses, rtol=1e-4)

  def params(run):
    ckpt = checkpoints_lib.Checkpointer(os.path.join(run, "checkpoints"))
    step, state, _ = ckpt.restore_raw()
    ckpt.close()
    assert step == stopped + 2
    return state["params"]

  import jax  # pylint: disable=g-import-not-at-top
  diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
                                 params(model_dir), params(str(tmp_path / "reference")))
  assert max(jax.tree_util.tree_leaves(diffs)) < 1e-4, diffs
