"""Data benchmarks (a script, not a test).

  python -m slam_jax.data.bench [--seconds 3600] [--data_dir DIR] [--batches 200] [--batch_size 8]

1. Front end: log-mel throughput in seconds of audio per second per core. TensorFlow is pinned
   to one thread (intra/inter-op and tf.data threadpool), the features of `--seconds` of 10 s
   utterances are computed through a tf.data map exactly as in the tasks; reports audio
   seconds / wall second (and / CPU second).
2. Pipeline: the full `slam_demo_speech` + converter pipeline from the prepared TFRecord cache
   in DIR (default: demo_data_dir()), with TensorFlow's default threading: audio seconds and
   examples per wall second.
3. `--resume [--positions 100,1000,10000] [--task slam_demo]`: runs the train iterator once to
   the largest position, saving tf.data's iterator state at each position, then times a resume
   from each (build the pipeline, restore the state, first batch) -- and, up to --skip_max, the
   old way (skip to the position). Restoring should take the same time at every position.
"""

import argparse
import json
import os
import time
from typing import Dict, Optional, Sequence


def _single_thread_tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  return tf


def bench_frontend(seconds: float = 600.0, utterance_seconds: float = 10.0) -> Dict[str, float]:
  """Log-mel throughput on one core."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  tf = _single_thread_tf()
  from slam_jax import types  # pylint: disable=g-import-not-at-top
  from slam_jax.data import features  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  n = int(utterance_seconds * types.SAMPLE_RATE)
  count = max(1, int(round(seconds / utterance_seconds)))
  t = np.arange(n) / types.SAMPLE_RATE
  base = (0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
  audio = np.stack([np.roll(base, 37 * i) for i in range(min(count, 8))])
  config = features.LogMelConfig()
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  ds = (tf.data.Dataset.from_tensor_slices(audio).repeat().take(count)
        .map(lambda x: features.log_mel(x, config), num_parallel_calls=1).with_options(options))
  for _ in ds.take(2):  # Trace and warm up.
    pass
  wall, cpu = time.perf_counter(), time.process_time()
  frames = 0
  for feats in ds:
    frames += int(feats.shape[0])
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  audio_seconds = count * utterance_seconds
  return {"audio_seconds": audio_seconds, "wall_seconds": round(wall, 3),
          "cpu_seconds": round(cpu, 3),
          "audio_seconds_per_second_per_core": round(audio_seconds / wall, 1),
          "audio_seconds_per_cpu_second": round(audio_seconds / max(cpu, 1e-9), 1),
          "frames": frames}


def bench_pipeline(data_dir: Optional[str] = None, batches: int = 20, batch_size: int = 8,
                   task: str = "slam_demo_speech") -> Dict[str, float]:
  """Full task + converter pipeline rate from the prepared cache."""
  import gin  # pylint: disable=g-import-not-at-top
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from slam_jax import types  # pylint: disable=g-import-not-at-top
  from slam_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if data_dir:
    gin.bind_parameter("demo_data_dir.data_dir", data_dir)
  it = pipeline.make_train_iterator(mixture_or_task_name=task, batch_size=batch_size,
                                    feature_lengths=pipeline.DEMO_FEATURE_LENGTHS, seed=0)
  next(it)  # Build, trace, fill buffers.
  start = time.perf_counter()
  frames = 0
  for _ in range(batches):
    b = next(it)
    frames += int(b[types.SPEECH_MASK].sum())
  wall = time.perf_counter() - start
  audio_seconds = frames / 100.0
  return {"task": task, "batches": batches, "batch_size": batch_size,
          "wall_seconds": round(wall, 3), "audio_seconds": round(audio_seconds, 1),
          "audio_seconds_per_second": round(audio_seconds / wall, 1),
          "examples_per_second": round(batches * batch_size / wall, 1),
          "cpu_cores_visible": os.cpu_count()}


def bench_resume(data_dir: Optional[str] = None, positions: Sequence[int] = (100, 1000, 10000),
                 batch_size: int = 8, task: str = "slam_demo", skip_max: int = 1000
                 ) -> Dict[str, object]:
  """Seconds to the first batch when resuming at each position: restored vs skipped."""
  import tempfile  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from slam_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  if data_dir:
    gin.bind_parameter("demo_data_dir.data_dir", data_dir)
  make = lambda **kw: pipeline.make_train_iterator(
      mixture_or_task_name=task, batch_size=batch_size,
      feature_lengths=pipeline.DEMO_FEATURE_LENGTHS, seed=0, **kw)
  tmp = tempfile.mkdtemp(prefix="slam_resume_bench_")
  it = make()
  reached = time.perf_counter()
  saved = {}
  for p in sorted(positions):
    while it.batches_consumed < p:
      next(it)
    prefix = os.path.join(tmp, f"pos{p}")
    it.save(prefix)
    saved[p] = (prefix, next(it))  # The batch a resume must yield first.
  run_seconds = time.perf_counter() - reached
  rows = []
  for p in sorted(positions):
    prefix, want = saved[p]
    size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)
               if f.startswith(f"pos{p}."))
    start = time.perf_counter()
    first = next(make(start_batch=p, checkpoint_path=prefix))
    restored = time.perf_counter() - start
    same = all(np.array_equal(first[k], want[k]) for k in want)
    row = {"position": p, "restore_seconds": round(restored, 2), "identical": same,
           "state_mib": round(size / 2**20, 1)}
    if p <= skip_max:
      start = time.perf_counter()
      next(make(start_batch=p))
      row["skip_seconds"] = round(time.perf_counter() - start, 2)
    rows.append(row)
  return {"task": task, "batch_size": batch_size, "seconds_to_run_to_positions":
          round(run_seconds, 1), "resumes": rows}


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seconds", type=float, default=3600.0, help="audio for the front end")
  parser.add_argument("--data_dir", default=None, help="demo corpus dir (pipeline benchmark)")
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--only", choices=("frontend", "pipeline"), default=None,
                      help="run one benchmark in this process (default: each in its own)")
  parser.add_argument("--resume", action="store_true", help="time resumes (benchmark 3) only")
  parser.add_argument("--positions", default="100,1000,10000")
  parser.add_argument("--task", default="slam_demo")
  parser.add_argument("--skip_max", type=int, default=1000,
                      help="also time skipping up to this position")
  args = parser.parse_args(argv)
  if args.resume:
    out = bench_resume(args.data_dir, [int(p) for p in args.positions.split(",")],
                       args.batch_size, args.task, args.skip_max)
    for r in out["resumes"]:
      skip = f", skipping {r['skip_seconds']} s" if "skip_seconds" in r else ""
      print(f"[slam_jax] resume at batch {r['position']:>6} ({args.task}, batch "
            f"{args.batch_size}): restored state {r['restore_seconds']} s{skip}; state "
            f"{r['state_mib']} MiB; next batch identical: {r['identical']}", flush=True)
    print(json.dumps({"resume": out}))
    return
  if args.only is None:
    # TensorFlow's thread settings are per process: run each benchmark in a fresh one.
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    base = [sys.executable, "-m", "slam_jax.data.bench", "--seconds", str(args.seconds),
            "--batches", str(args.batches), "--batch_size", str(args.batch_size)]
    if args.data_dir:
      base += ["--data_dir", args.data_dir]
    for only in ("frontend", "pipeline"):
      subprocess.run(base + ["--only", only], check=False)
    return
  if args.only == "frontend":
    front = bench_frontend(args.seconds)
    print(f"[slam_jax] log-mel front end: {front['audio_seconds_per_second_per_core']} s of "
          f"audio per second per core ({front['audio_seconds']:.0f} s of audio in "
          f"{front['wall_seconds']} s wall, {front['cpu_seconds']} s CPU)", flush=True)
    print(json.dumps({"frontend": front}))
    return
  try:
    pipe = bench_pipeline(args.data_dir, args.batches, args.batch_size)
  except FileNotFoundError as e:
    print(f"[slam_jax] pipeline benchmark skipped: {e}")
    return
  print(f"[slam_jax] pipeline ({pipe['task']} from the prepared cache through the converter, "
        f"batches of {pipe['batch_size']}): {pipe['audio_seconds_per_second']} s of audio per "
        f"second, {pipe['examples_per_second']} examples/s ({pipe['cpu_cores_visible']} cores "
        "visible, default TensorFlow threading)", flush=True)
  print(json.dumps({"pipeline": pipe}))


if __name__ == "__main__":
  main()
