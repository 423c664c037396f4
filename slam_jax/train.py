r"""Pre-training entry point: `python -m slam_jax.train --gin_file=... --gin.KEY=VALUE [--resume]`.

Thin on purpose: flags + gin are parsed here, everything else is `train(...)`, which tests call
directly. Example:

  python -m slam_jax.train --gin_file=gin/experiments/slam_demo_tiny.gin \
      --gin.MODEL_DIR="'runs/demo'" --gin.TRAIN_STEPS=200
"""

import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import gin
import jax
import numpy as np

from slam_jax import checkpoints as checkpoints_lib
from slam_jax import flops as flops_lib
from slam_jax import host_memory
from slam_jax import partitioning as partitioning_lib
from slam_jax import trainer as trainer_lib
from slam_jax import types

FRAME_SECONDS = 0.01  # 10 ms hop of the log-mel front end.


class TrainingDiverged(RuntimeError):
  """Raised when too many consecutive steps had a non-finite loss or gradient."""


@dataclasses.dataclass
class TrainResult:
  """What a finished (or stopped) run reports."""

  model_dir: str
  last_step: int
  first_metrics: Dict[str, float]
  last_metrics: Dict[str, float]
  checkpoint_dir: str
  stopped_by_signal: bool = False
  skipped_steps: int = 0
  history: List[Dict[str, float]] = dataclasses.field(default_factory=list)
  chance: Dict[str, float] = dataclasses.field(default_factory=dict)


def _to_host(metrics) -> Dict[str, float]:
  return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


class ProgressLogger:
  """Console progress line + TensorBoard scalars (clu metric writers), one call per step."""

  def __init__(self, model_dir: str, total_steps: int, global_batch_size: int,
               flops_per_step: Optional[float], peak_flops: Optional[float], log_every: int):
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    self.total_steps = total_steps
    self.global_batch_size = global_batch_size
    self.flops_per_step = flops_per_step
    self.peak_flops = peak_flops
    self.log_every = max(log_every, 1)
    self.writer = metric_writers.create_default_writer(
        os.path.join(model_dir, "tensorboard"), just_logging=jax.process_index() > 0)
    self._last_time = time.perf_counter()
    self._last_step: Optional[int] = None
    self._window_audio_s = 0.0
    self._window_tokens = 0
    self.audio_seconds_seen = 0.0
    self.examples_seen = 0

  @staticmethod
  def batch_counts(host_batch: Mapping[str, np.ndarray]):
    """(audio seconds, real text tokens) in the global batch, from this host's slice."""
    audio_s = float(np.sum(host_batch[types.SPEECH_MASK])) * FRAME_SECONDS * jax.process_count()
    tokens = int(np.sum(host_batch[types.TEXT_SEGMENT_IDS] > 0)) * jax.process_count()
    return audio_s, tokens

  def log(self, step: int, metrics: Dict[str, float], audio_s: float, tokens: int,
          force: bool = False) -> Dict[str, float]:
    """Records step `step` (metrics already on host); writes every `log_every` steps.

    Rates are averaged over the steps since the previous write.
    """
    self._window_audio_s += audio_s
    self._window_tokens += tokens
    self.audio_seconds_seen += audio_s
    self.examples_seen += self.global_batch_size
    first = self._last_step is None  # Its time includes compilation: printed without rates.
    if not (first or force or step % self.log_every == 0):
      return metrics
    now = time.perf_counter()
    steps = 0 if first else max(step - self._last_step, 0)
    elapsed = max(now - self._last_time, 1e-9)
    rates = {"data/audio_hours_seen": self.audio_seconds_seen / 3600.0,
             "data/examples_seen": float(self.examples_seen)}
    if steps:
      rates.update({
          "perf/steps_per_sec": steps / elapsed,
          "perf/examples_per_sec": steps * self.global_batch_size / elapsed,
          "perf/audio_seconds_per_sec": self._window_audio_s / elapsed,
          "perf/text_tokens_per_sec": self._window_tokens / elapsed,
      })
      if self.flops_per_step and self.peak_flops:
        rates["perf/mfu"] = (self.flops_per_step * rates["perf/steps_per_sec"] /
                             (self.peak_flops * jax.device_count()))
    scalars = dict(metrics, **rates)
    self.writer.write_scalars(step, scalars)
    if jax.process_index() == 0:
      print(self.format_line(step, scalars), flush=True)
    self._last_step, self._last_time = step, now
    self._window_audio_s, self._window_tokens = 0.0, 0
    return scalars

  def format_line(self, step: int, s: Dict[str, float]) -> str:
    parts = [f"step {step}/{self.total_steps}", f"loss {s.get('loss', float('nan')):.4f}"]
    for key in sorted(s):
      if key.endswith("/loss") and not key.startswith("perf"):
        parts.append(f"{key.split('/')[0]} {s[key]:.3f}")
    for key in sorted(s):
      if key.endswith("/accuracy"):
        parts.append(f"{key.split('/')[0]}_acc {s[key]:.3f}")
    if "rows/idle" in s:  # each kind's share of the rows that bear a loss (SlamModel.loss_fn)
      shares = "/".join(f"{100 * s.get(f'rows/{k}', 0.0):.0f}"
                        for k in ("text", "speech", "paired", "idle"))
      parts.append(f"rows text/speech/paired/idle {shares}%")
    if "perf/steps_per_sec" in s:
      parts.append(f"{s['perf/steps_per_sec']:.2f} steps/s")
      parts.append(f"{s['perf/examples_per_sec']:.1f} ex/s")
      parts.append(f"{s['perf/audio_seconds_per_sec']:.1f} audio-s/s")
    if "perf/mfu" in s:
      parts.append(f"MFU {100 * s['perf/mfu']:.1f}%")
    return " | ".join(parts)

  def close(self):
    self.writer.flush()
    self.writer.close()


@gin.configurable(denylist=["resume"])
def train(
    *,
    model_dir: str = gin.REQUIRED,
    model: Any = gin.REQUIRED,
    make_data: Callable[..., Any] = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    feature_lengths: Mapping[str, int] = gin.REQUIRED,
    optimizer: trainer_lib.OptimizerConfig = trainer_lib.OptimizerConfig(),
    mesh: partitioning_lib.MeshConfig = partitioning_lib.MeshConfig(),
    checkpoint: checkpoints_lib.CheckpointConfig = checkpoints_lib.CheckpointConfig(),
    seed: int = 0,
    num_microbatches: int = 1,
    log_every: int = 10,
    max_bad_steps: int = 5,
    peak_flops_per_device: Optional[float] = None,
    measure_peak: bool = True,
    resume: bool = False,
    stop_at_step: Optional[int] = None,
) -> TrainResult:
  """Pre-trains `model` on the batches `make_data` yields, with checkpoints in `model_dir`.

  Args:
    model_dir: where checkpoints, TensorBoard events and `config.gin` go (MODEL_DIR).
    model: a `slam_jax.model.SlamModel` (its `loss_fn`, `get_initial_variables`).
    make_data: `(batch_size=per-host rows, feature_lengths, shard_info, seed, start_batch) ->
      iterator` of host-local numpy model batches (see slam_jax/data/pipeline.py);
      `start_batch` is how many batches a resumed run skips.
    batch_size: global batch size (BATCH_SIZE), split evenly over processes.
    train_steps: total optimizer steps (TRAIN_STEPS).
    feature_lengths: {"speech": frames, "text": tokens} (TASK_FEATURE_LENGTHS).
    optimizer, mesh, checkpoint: see their configs.
    seed: seeds parameters, masks, dropout (per step) and the data order.
    num_microbatches: gradient accumulation steps per optimizer step.
    log_every: steps between progress lines; TensorBoard gets the same cadence.
    max_bad_steps: stop with `TrainingDiverged` after this many consecutive non-finite steps.
    peak_flops_per_device: peak FLOP/s for MFU; None measures a matmul on this device.
    measure_peak: measure the peak when not given (a fraction of a second); False disables MFU.
    resume: continue from the newest readable checkpoint in model_dir. Without it, a model_dir
      that already holds checkpoints is refused, so a run never silently overwrites another.
    stop_at_step: stop (with a checkpoint) before train_steps, e.g. to split a run in two.
  """
  if not model_dir:
    raise ValueError("train.model_dir (MODEL_DIR) is empty: give a directory for checkpoints.")
  if "://" not in model_dir:  # Local paths: orbax needs them absolute; gs:// etc. stay as given.
    model_dir = os.path.abspath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
  ckpt_dir = os.path.join(model_dir, "checkpoints")
  checkpointer = checkpoints_lib.Checkpointer(ckpt_dir, checkpoint)
  if checkpointer.all_steps() and not resume:
    raise FileExistsError(
        f"{ckpt_dir} already holds checkpoints {checkpointer.all_steps()}; pass --resume to "
        "continue that run, or choose another MODEL_DIR.")

  mesh_obj = partitioning_lib.make_mesh(mesh)
  partitioning_lib.check_batch_divisible(batch_size, mesh_obj)
  rules = partitioning_lib.logical_axis_rules(fsdp=mesh.fsdp)
  shapes, dtypes = model.input_shapes_and_types(batch_size, feature_lengths)
  tx = trainer_lib.make_optimizer(optimizer, train_steps)
  trainer = trainer_lib.PartitionedTrainer(
      model, tx, mesh_obj, rules, seed, shapes, dtypes, num_microbatches=num_microbatches,
      schedule=trainer_lib.make_schedule(optimizer, train_steps))
  logging.info("Model: %s parameters; mesh %s", f"{trainer.num_params():,}", dict(mesh_obj.shape))

  if resume and checkpointer.all_steps():
    start_step, state, data_state = checkpointer.restore(trainer.abstract_state)
    start_batch = int(data_state["batches_consumed"])
    print(f"[slam_jax] resumed from {ckpt_dir} step {start_step} "
          f"(data position: {start_batch} batches)", flush=True)
  else:
    state, start_step, start_batch = trainer.init_state(), 0, 0

  with open(os.path.join(model_dir, "config.gin"), "w") as f:
    f.write(gin.config_str())

  compile_start = time.perf_counter()
  compiled = trainer.compile(batch_size)
  flops_per_step = flops_lib.compiled_flops(compiled)
  logging.info("Compiled the train step in %.1f s (%s FLOPs/step)",
               time.perf_counter() - compile_start, flops_per_step)
  if peak_flops_per_device is None and measure_peak and flops_per_step:
    peak_flops_per_device = flops_lib.measure_matmul_peak(model.compute_dtype)

  per_host = batch_size // jax.process_count()
  shard_info = _shard_info()
  data = make_data(batch_size=per_host, feature_lengths=feature_lengths, shard_info=shard_info,
                   seed=seed, start_batch=start_batch)
  progress = ProgressLogger(model_dir, train_steps, batch_size, flops_per_step,
                            peak_flops_per_device, log_every)
  stop = checkpoints_lib.StopSignal()
  end_step = train_steps if stop_at_step is None else min(stop_at_step, train_steps)
  batches_consumed = start_batch
  first_metrics: Dict[str, float] = {}
  last_metrics: Dict[str, float] = {}
  history: List[Dict[str, float]] = []
  pending = None  # (step, device metrics) of the previous step: fetched after dispatching the next.

  def finish_pending():
    nonlocal first_metrics, last_metrics
    if pending is None:
      return
    p_step, p_metrics, p_audio, p_tokens = pending
    host = _to_host(p_metrics)
    if not first_metrics:
      first_metrics = host
    last_metrics = host
    history.append(dict(host, step=p_step))
    progress.log(p_step, host, p_audio, p_tokens, force=(p_step == end_step))
    if host.get("bad_steps", 0) >= max_bad_steps:
      raise TrainingDiverged(
          f"{int(host['bad_steps'])} consecutive steps up to step {p_step} had a non-finite loss "
          f"or gradient (train.max_bad_steps={max_bad_steps}); last metrics: {host}. Lower the "
          "learning rate, check the data for NaN/Inf features, or resume from an earlier checkpoint.")

  step = start_step
  try:
    while step < end_step and not stop.requested:
      host_batch = next(data)
      batches_consumed += 1
      audio_s, tokens = progress.batch_counts(host_batch)
      global_batch = partitioning_lib.host_batch_to_global(host_batch, mesh_obj)
      state, metrics = trainer.step(state, global_batch)
      step += 1
      finish_pending()
      pending = (step, metrics, audio_s, tokens)
      if step % checkpoint.save_every_steps == 0:
        checkpointer.save(step, state, _data_state(batches_consumed, seed))
    finish_pending()
    pending = None
    checkpointer.save(step, state, _data_state(batches_consumed, seed), force=True)
  finally:
    checkpointer.close()
    progress.close()
    stop.restore_handlers()

  return TrainResult(model_dir=model_dir, last_step=step, first_metrics=first_metrics,
                     last_metrics=last_metrics, checkpoint_dir=ckpt_dir,
                     stopped_by_signal=stop.requested,
                     skipped_steps=int(last_metrics.get("skipped_steps", 0)), history=history,
                     chance=dict(getattr(model, "chance_accuracies", dict)()))


def _data_state(batches_consumed: int, seed: int) -> Dict[str, Any]:
  return {"batches_consumed": int(batches_consumed), "seed": int(seed),
          "process_count": int(jax.process_count())}


def _shard_info():
  import seqio  # pylint: disable=g-import-not-at-top
  return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def summarize(result: TrainResult, window: Optional[int] = None) -> str:
  """Final losses/accuracies next to their starting values, and where the checkpoint is.

  Per-batch metrics are noisy (a batch holds few masked positions of each kind), so both columns
  average `window` steps: the first ones of this run and the last ones (default: a tenth of the
  steps, between 1 and 25).
  """
  history = result.history or [result.last_metrics]
  n = window or max(1, min(25, len(history) // 10))
  head, tail = history[:n], history[-n:]
  mean = lambda rows, k: float(np.mean([r[k] for r in rows if k in r])) if any(
      k in r for r in rows) else math.nan
  lines = [f"[slam_jax] finished at step {result.last_step}"
           + (" (stopped by signal)" if result.stopped_by_signal else "")]
  keys = sorted(k for k in result.last_metrics
                if k == "loss" or k.endswith("/loss") or k.endswith("accuracy"))
  width = max((len(k) for k in keys), default=10)
  first_label, last_label = f"first {n} steps", f"last {n} steps"
  lines.append(f"  {'metric (mean)':<{width}}  {first_label:>14}  {last_label:>14}  {'chance':>8}")
  for k in keys:
    chance = f"{result.chance[k]:>8.4f}" if k in result.chance else ""
    lines.append(f"  {k:<{width}}  {mean(head, k):>14.4f}  {mean(tail, k):>14.4f}  {chance}")
  if result.skipped_steps:
    lines.append(f"  non-finite steps skipped: {result.skipped_steps}")
  lines.append(f"  checkpoint: {result.checkpoint_dir}")
  return "\n".join(lines)


def parse_gin_flag(arg: str, gin_files: List[str], bindings: List[str]) -> bool:
  """Appends `--gin_file=F` to `gin_files` or `--gin.KEY=VALUE` to `bindings`; False otherwise."""
  if arg.startswith("--gin_file="):
    gin_files.append(arg.split("=", 1)[1])
    return True
  if arg.startswith("--gin."):
    key, _, value = arg[len("--gin."):].partition("=")
    if not value:
      raise ValueError(f"Flag {arg!r} has no value: write --gin.{key}=VALUE.")
    bindings.append(f"{key} = {value}")
    return True
  return False


def parse_flags(argv: Sequence[str]):
  """Splits argv into gin files, gin bindings (`--gin.KEY=VALUE`) and `--resume`."""
  gin_files, bindings, resume = [], [], False
  for arg in argv:
    if parse_gin_flag(arg, gin_files, bindings):
      continue
    if arg.startswith("--gin_bindings="):
      bindings.append(arg.split("=", 1)[1])
    elif arg == "--resume":
      resume = True
    elif arg in ("-h", "--help"):
      print(__doc__)
      sys.exit(0)
    else:
      raise ValueError(f"Unknown flag {arg!r}; expected --gin_file=, --gin.KEY=VALUE or --resume.")
  if not gin_files:
    raise ValueError("Give at least one --gin_file=gin/experiments/<name>.gin.")
  return gin_files, bindings, resume


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str], import_tasks: bool = True) -> None:
  """Parses gin files and overrides; unknown or malformed bindings fail here, before compiling.

  Args:
    gin_files: files, relative to the repo root or the working directory.
    bindings: `KEY = VALUE` overrides.
    import_tasks: import every configurable module incl. the seqio tasks (TensorFlow); False
      imports only the model side (benchmarks on generated data).
  """
  if import_tasks:
    import slam_jax.configurables  # pylint: disable=g-import-not-at-top,unused-import
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  gin.add_config_file_search_path(root)
  gin.add_config_file_search_path(os.getcwd())
  try:
    gin.parse_config_files_and_bindings(gin_files, bindings, finalize_config=False)
  except (ValueError, KeyError, TypeError, IOError, SyntaxError) as e:
    raise ValueError(f"Bad gin configuration ({', '.join(gin_files)} + {list(bindings)}): {e}") from e


def main(argv: Sequence[str]) -> TrainResult:
  host_memory.tune()  # before JAX starts its threads
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  jax.config.update("jax_threefry_partitionable", True)
  gin_files, bindings, resume = parse_flags(argv)
  parse_gin(gin_files, bindings)
  partitioning_lib.maybe_initialize_distributed(os.environ.get("SLAM_DISTRIBUTED"))
  result = train(resume=resume)
  print(summarize(result), flush=True)
  return result


if __name__ == "__main__":
  # Run the imported module's main, so gin sees the configurables as `slam_jax.train.*`
  # rather than `__main__.*`.
  from slam_jax import train as _train_module  # pylint: disable=g-import-not-at-top
  _train_module.main(sys.argv[1:])
