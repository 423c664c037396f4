r"""CPU seconds XLA:CPU spends compiling the tiny SLAM model (the test suite's main cost).

  python -m slam_jax.bench.compile_cost [--repeats 3] \
      [--flags "--xla_backend_optimization_level=0" "--xla_cpu_use_fusion_emitters=false" ...]

Each flag set (a quoted, space-separated string of XLA flags; '' = XLA's defaults) runs in its
own subprocess (XLA reads XLA_FLAGS once, when the backend starts) with the persistent
compilation cache off. The child builds the tests' tiny SLAM model (tiny encoder, a 2 x 8
codebook, every objective on, batch 6 of 48 speech frames + 12 text tokens), then measures its CPU
seconds (`time.process_time`: every thread, so the figure moves less with machine load than
wall time) for `init_state` and for the first `step` (compile + one run), and checks that the
second step's loss is the same under every flag set. Rounds interleave the flag sets.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Sequence

_CHILD = r"""
import json, time
import jax
jax.config.update("jax_threefry_partitionable", True)
from slam_jax import model as model_lib, partitioning as P, trainer as T
from slam_jax.data import synthetic
from slam_jax.losses import compose
from slam_jax.models import encoder as E, quantizer as Q
model = model_lib.make_model(
    encoder_config=E.get_preset("tiny", vocab_size=128, dropout_rate=0.0),
    quantizer=Q.QuantizerConfig(num_groups=2, num_entries=8, code_dim=16),
    objectives=compose.ObjectiveConfig(num_distractors=10),
    loss_weights=compose.LossWeightSchedule(stage2_start_step=0))
lengths = {"speech": 48, "text": 12}
shapes, dtypes = model.input_shapes_and_types(6, lengths)
batch = next(synthetic.SyntheticIterator(6, lengths, 128, seed=0))
tx = T.make_optimizer(T.OptimizerConfig(learning_rate=1e-2, warmup_steps=1), 10)
mesh = P.make_mesh(P.MeshConfig(1, 1, False), jax.devices()[:1])
trainer = T.PartitionedTrainer(model, tx, mesh, P.logical_axis_rules(False), seed=0,
                               input_shapes=shapes, input_types=dtypes)
t0 = time.process_time()
state = trainer.init_state()
t1 = time.process_time()
state, metrics = trainer.step(state, P.host_batch_to_global(batch, mesh))
float(metrics["loss"])
t2 = time.process_time()
state, metrics = trainer.step(state, P.host_batch_to_global(batch, mesh))
loss = float(metrics["loss"])
t3 = time.process_time()
print(json.dumps({"init": t1 - t0, "first_step": t2 - t1, "second_step": t3 - t2, "loss": loss}))
"""


def measure(flags: str) -> Dict[str, float]:
  """One child process under XLA_FLAGS=flags; returns its CPU seconds and second-step loss."""
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             JAX_ENABLE_COMPILATION_CACHE="false")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                        check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"XLA_FLAGS={flags!r} failed:\n{proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--flags", nargs="+", default=[
      "", "--xla_backend_optimization_level=0",
      "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  runs: Dict[str, List[Dict[str, float]]] = {f: [] for f in args.flags}
  for _ in range(args.repeats):
    for flags in args.flags:
      runs[flags].append(measure(flags))
  print(f"{'XLA_FLAGS':<72} {'init':>6} {'step 1':>7} {'step 2':>7}  loss (median CPU-s "
        f"of {args.repeats})")
  for flags, results in runs.items():
    med = {k: statistics.median(r[k] for r in results) for k in ("init", "first_step",
                                                                  "second_step")}
    print(f"{flags or '(defaults)':<72} {med['init']:6.1f} {med['first_step']:7.1f} "
          f"{med['second_step']:7.3f}  {results[0]['loss']:.6f}")
  losses = {round(r["loss"], 5) for results in runs.values() for r in results}
  if len(losses) > 1:
    print(f"WARNING: second-step losses differ between flag sets: {sorted(losses)}")


if __name__ == "__main__":
  main(sys.argv[1:])
