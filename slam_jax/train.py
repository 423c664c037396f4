r"""Pre-training entry point: `python -m slam_jax.train --gin_file=... --gin.KEY=VALUE [--resume]`.

Thin on purpose: flags + gin are parsed here, everything else is `train(...)`, which tests call
directly. Example:

  python -m slam_jax.train --gin_file=gin/experiments/slam_demo_tiny.gin \
      --gin.MODEL_DIR="'runs/demo'" --gin.TRAIN_STEPS=200

Exit status: 0 when the run reached TRAIN_STEPS (or stop_at_step), PREEMPTED_EXIT_CODE (75,
EX_TEMPFAIL) when SIGTERM/SIGINT stopped it early after saving a checkpoint (relaunch with
--resume), 1 on errors. `--resume_step=N` resumes from step N (e.g. the last-known-good one named
by a divergence error). Guarantees and their tests: docs/failure_modes.md.
"""

import dataclasses
import difflib
import itertools
import json
import logging
import math
import os
import sys
import time
import tokenize
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import gin
import jax
import numpy as np

from slam_jax import checkpoints as checkpoints_lib
from slam_jax import encoder_io
from slam_jax import run_lock
from slam_jax import partitioning as partitioning_lib
from slam_jax import trainer as trainer_lib
from slam_jax import types
from slam_jax.perf import collector
from slam_jax.perf import flops as flops_lib
from slam_jax.perf import host_memory

FRAME_SECONDS = 0.01  # 10 ms hop of the log-mel front end.
PREEMPTED_EXIT_CODE = 75  # sysexits.h EX_TEMPFAIL: stopped by a signal, relaunch with --resume.


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
  validation: List[Dict[str, float]] = dataclasses.field(default_factory=list)


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


class HealthTracker:
  """Judges which checkpoints are healthy enough to be the last-known-good one.

  A step is healthy when its loss is finite, it was not skipped, and its loss and parameter norm
  are at most `ratio` times those of the last good checkpoint (the first step's when there is
  none). A checkpoint at step N is good when the steps since the previous save and step N + 1
  (the first loss computed with its parameters; when N is the final step, up to N) were healthy.
  """

  def __init__(self, ratio: float, reference: Optional[Mapping[str, float]] = None):
    self.ratio = ratio
    self.reference = dict(reference) if reference else None
    self.window_ok = True
    self.candidate: Optional[Tuple[int, Dict[str, float]]] = None
    self.last_reason = ""

  def _healthy(self, m: Mapping[str, float]) -> bool:
    loss, pnorm = m.get("loss", math.nan), m.get("param_norm", 0.0)
    if not math.isfinite(loss) or m.get("nonfinite", 0) or not math.isfinite(pnorm):
      self.last_reason = f"step {int(m['step'])} had a non-finite loss or gradient"
      return False
    if self.reference is None:
      self.reference = {"loss": abs(loss), "param_norm": pnorm}
    if abs(loss) > self.ratio * max(self.reference["loss"], 1e-3) or (
        pnorm > self.ratio * max(self.reference["param_norm"], 1e-3)):
      self.last_reason = (f"step {int(m['step'])}: loss {loss:.4g} / param norm {pnorm:.4g} "
                          f"above {self.ratio:g}x the last good ({self.reference['loss']:.4g} / "
                          f"{self.reference['param_norm']:.4g})")
      return False
    return True

  def observe(self, m: Mapping[str, float], checkpointer) -> None:
    ok = self._healthy(m)
    self.window_ok &= ok
    if self.candidate is not None and int(m["step"]) == self.candidate[0] + 1:
      self._decide(checkpointer, ok)

  def _decide(self, checkpointer, ok: bool) -> None:
    step, info = self.candidate
    self.candidate = None
    if ok:
      checkpointer.mark_good(step, info)
      self.reference = {"loss": abs(info["loss"]), "param_norm": info["param_norm"]}
    else:
      logging.warning("Checkpoint %d is not kept as last-known-good: %s.", step, self.last_reason)

  def saved(self, step: int, last: Mapping[str, float]) -> None:
    """A checkpoint of `step` was saved; `last` are step `step`'s metrics."""
    if self.window_ok:
      self.candidate = (step, {"loss": float(last.get("loss", math.nan)),
                               "param_norm": float(last.get("param_norm", math.nan))})
    else:
      logging.warning("Checkpoint %d is not kept as last-known-good: %s.", step, self.last_reason)
    self.window_ok = True

  def finish(self, checkpointer) -> None:
    """The run ended normally: the final checkpoint is judged on the steps up to it."""
    if self.candidate is not None:
      self._decide(checkpointer, True)


def _check_args(model_dir, batch_size, train_steps, log_every, max_bad_steps, num_microbatches,
                stop_at_step, resume_step, healthy_ratio) -> None:
  """Rejects values that would otherwise fail late (after compiling) or silently misbehave."""
  checks = [
      (model_dir, "train.model_dir (MODEL_DIR) is not set: give a directory for checkpoints, "
                  "e.g. --gin.MODEL_DIR=\"'runs/my_run'\"."),
      (isinstance(batch_size, int) and batch_size >= 1, f"BATCH_SIZE={batch_size!r}: must be >= 1."),
      (isinstance(train_steps, int) and train_steps >= 1,
       f"TRAIN_STEPS={train_steps!r}: must be an integer >= 1."),
      (log_every >= 1, f"train.log_every={log_every}: must be >= 1."),
      (max_bad_steps >= 1, f"train.max_bad_steps={max_bad_steps}: must be >= 1."),
      (num_microbatches >= 1 and batch_size % (num_microbatches * jax.process_count()) == 0,
       f"BATCH_SIZE={batch_size} must be divisible by num_microbatches={num_microbatches} x "
       f"{jax.process_count()} processes."),
      (stop_at_step is None or stop_at_step >= 1, f"train.stop_at_step={stop_at_step}: must be >= 1."),
      (resume_step is None or resume_step >= 0, f"--resume_step={resume_step}: must be >= 0."),
      (healthy_ratio > 1, f"train.healthy_ratio={healthy_ratio}: must be > 1."),
  ]
  for ok, message in checks:
    if not ok:
      raise ValueError(message)


# Saved with every checkpoint and compared on resume: a mismatch changes the data order.
RESUME_KEYS = ("seed", "process_count", "batch_size", "mixture_or_task_name")


def _check_resume_matches(saved: Mapping[str, Any], now: Mapping[str, Any], ckpt_dir: str) -> None:
  diffs = [f"{k}: saved {saved[k]!r}, now {now[k]!r}" for k in RESUME_KEYS
           if k in saved and k in now and saved[k] != now[k]]
  if diffs:
    raise ValueError(
        f"Resuming {ckpt_dir} with settings that differ from the run that wrote it ("
        + "; ".join(diffs) + "): the data order would not continue. Restore the original "
        "values (see config.gin beside the checkpoints), choose another MODEL_DIR, or pass "
        "--gin.slam_jax.train.train.allow_resume_mismatch=True to continue anyway.")


def _write_config(model_dir: str, start_step: int) -> str:
  """config.gin for the first run; config.resume-<step>-<time>.gin beside it for each resume."""
  path = os.path.join(model_dir, "config.gin")
  if os.path.exists(path):
    path = os.path.join(model_dir,
                        f"config.resume-{start_step}-{time.strftime('%Y%m%d-%H%M%S')}.gin")
  with open(path, "w") as f:
    f.write(gin.config_str())
  return path


@gin.configurable(denylist=["resume", "resume_step", "stop"])
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
    init_encoder_from: Optional[str] = None,
    healthy_ratio: float = 10.0,
    allow_resume_mismatch: bool = False,
    lock_stale_seconds: float = 300.0,
    resume_step: Optional[int] = None,
    stop: Optional[checkpoints_lib.StopSignal] = None,
    eval_every: int = 0,
    make_eval_data: Optional[Callable[..., Any]] = None,
    eval_batches: int = 4,
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
    init_encoder_from: an encoder checkpoint (`python -m slam_jax.convert from-hf`, see
      docs/interop.md) whose params replace the fresh encoder's at step 0 (quantizer and heads
      stay fresh); ignored when resuming. Its architecture must equal the model's.
    healthy_ratio: a checkpoint is last-known-good when the loss and parameter norm of the steps
      around it stay below this multiple of the previous good one's (see HealthTracker).
    allow_resume_mismatch: resume even if seed / process count / batch size / mixture differ
      from the checkpoint's (the data order then does not continue).
    lock_stale_seconds: a MODEL_DIR lock whose heartbeat is older than this is taken over.
    resume_step: resume from this step instead of the newest (implies resume); newer steps are
      moved aside as `<step>.superseded-<time>`.
    stop: the SIGTERM/SIGINT handler `main` installed first; None installs one here. In a
      multi-process job it must exist before `jax.distributed.initialize`, which then takes
      SIGTERM over for JAX's preemption service (checkpoints.StopSignal.should_stop).
    eval_every: every this many steps (and at the end), `model.eval_fn` (no dropout, fixed
      masks) over `eval_batches` validation batches (EVAL_EVERY; 0 = never).
    make_eval_data: like `make_data` (same arguments) for the validation split, e.g.
      make_train_iterator with split='validation'; the same batches every time.
    eval_batches: validation batches per evaluation.
  """
  stop = stop or checkpoints_lib.StopSignal()  # First: a signal at any later point stops cleanly.
  try:
    return _train(**locals())
  finally:
    stop.restore_handlers()


def _train(*, model_dir, model, make_data, batch_size, train_steps, feature_lengths, optimizer, mesh,
           checkpoint, seed, num_microbatches, log_every, max_bad_steps, peak_flops_per_device,
           measure_peak, resume, stop_at_step, healthy_ratio, allow_resume_mismatch,
           lock_stale_seconds, resume_step, stop, init_encoder_from, eval_every, make_eval_data,
           eval_batches) -> TrainResult:
  """`train` after its signal handler is in place."""
  _check_args(model_dir, batch_size, train_steps, log_every, max_bad_steps, num_microbatches,
              stop_at_step, resume_step, healthy_ratio)
  resume = resume or resume_step is not None
  if "://" not in model_dir:  # Local paths: orbax needs them absolute; gs:// etc. stay as given.
    model_dir = os.path.abspath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
  lock = run_lock.RunLock(model_dir, lock_stale_seconds)
  if jax.process_index() == 0:
    lock.acquire()
  try:
    return _train_locked(**locals())
  finally:
    lock.release()


def _train_locked(*, model_dir, model, make_data, batch_size, train_steps, feature_lengths,
                  optimizer, mesh, checkpoint, seed, num_microbatches, log_every, max_bad_steps,
                  peak_flops_per_device, measure_peak, resume, stop_at_step, healthy_ratio,
                  allow_resume_mismatch, lock_stale_seconds, resume_step, stop,
                  init_encoder_from, eval_every, make_eval_data, eval_batches,
                  lock) -> TrainResult:
  """`train` while holding the MODEL_DIR lock."""
  del lock_stale_seconds
  ckpt_dir = os.path.join(model_dir, "checkpoints")
  checkpointer = checkpoints_lib.Checkpointer(ckpt_dir, checkpoint)
  existing = checkpointer.all_steps()
  if existing and not resume:
    checkpointer.close()
    raise FileExistsError(
        f"{ckpt_dir} already holds checkpoints {existing}; pass --resume to "
        "continue that run, or choose another MODEL_DIR.")
  if resume and not checkpointer.all_steps():
    if resume_step is not None:
      checkpointer.close()
      raise FileNotFoundError(f"--resume_step={resume_step}: {ckpt_dir} holds no checkpoints.")
    print(f"[slam_jax] --resume: no checkpoint under {ckpt_dir}; starting from step 0.",
          flush=True)

  mesh_obj = partitioning_lib.make_mesh(mesh)
  partitioning_lib.check_batch_divisible(batch_size, mesh_obj)
  rules = partitioning_lib.logical_axis_rules(fsdp=mesh.fsdp)
  shapes, dtypes = model.input_shapes_and_types(batch_size, feature_lengths)
  tx = trainer_lib.make_optimizer(optimizer, train_steps)
  trainer = trainer_lib.PartitionedTrainer(
      model, tx, mesh_obj, rules, seed, shapes, dtypes, num_microbatches=num_microbatches,
      schedule=trainer_lib.make_schedule(optimizer, train_steps),
      cache_key=("slam_jax.train", trainer_lib.schedule_key(optimizer, train_steps)))
  logging.info("Model: %s parameters; mesh %s", f"{trainer.num_params():,}", dict(mesh_obj.shape))

  good = checkpointer.last_good()
  if resume and checkpointer.all_steps():
    start_step, state, data_state = checkpointer.restore(trainer.abstract_state, step=resume_step)
    if resume_step is not None:
      checkpointer.supersede_after(resume_step)
      good = checkpointer.last_good()
    start_batch = int(data_state["batches_consumed"])
    print(f"[slam_jax] resumed from {ckpt_dir} step {start_step} "
          f"(data position: {start_batch} batches)", flush=True)
  else:
    state, start_step, start_batch, data_state = None, 0, 0, {}  # Initialised after the data.

  # The data before compiling: an unknown mixture or a missing corpus fails in seconds.
  per_host = batch_size // jax.process_count()
  shard_info = _shard_info()
  data = make_data(batch_size=per_host, feature_lengths=feature_lengths, shard_info=shard_info,
                   seed=seed, start_batch=start_batch)
  source = data  # Saves its own state (pipeline.DataIterator) into each checkpoint.
  if start_step:  # Before the first batch: the saved iterator state replaces the skipping.
    _restore_data_iterator(checkpointer, start_step, data)
  description = dict(data.state()) if hasattr(data, "state") else {}
  run_state = _data_state(start_batch, seed, batch_size, description.get("mixture_or_task_name"))
  if data_state and not allow_resume_mismatch:
    _check_resume_matches(data_state, run_state, ckpt_dir)
  try:
    data = itertools.chain([next(data)], data)
  except StopIteration:
    raise ValueError(f"make_data={getattr(make_data, '__name__', make_data)} yielded no batch "
                     f"(per-host batch {per_host}, lengths {dict(feature_lengths)}).") from None

  if state is None:
    state = trainer.init_state()
    if init_encoder_from:
      state = _init_encoder(state, model, init_encoder_from)
      print(f"[slam_jax] encoder initialised from {init_encoder_from}", flush=True)
  config_path = _write_config(model_dir, start_step)
  logging.info("Operative config written to %s", config_path)
  if hasattr(model, "encoder_config"):  # For `python -m slam_jax.convert from-run`.
    encoder_io.write_config(os.path.join(model_dir, encoder_io.CONFIG_FILE), model.encoder_config)

  compile_start = time.perf_counter()
  compiled = trainer.compile(batch_size)
  flops_per_step = flops_lib.compiled_flops(compiled)
  logging.info("Compiled the train step in %.1f s (%s FLOPs/step)",
               time.perf_counter() - compile_start, flops_per_step)
  if peak_flops_per_device is None and measure_peak and flops_per_step:
    peak_flops_per_device = flops_lib.measure_matmul_peak(model.compute_dtype)
  partitioning_lib.sync_processes(f"slam_jax_train_from_step_{start_step}")

  progress = ProgressLogger(model_dir, train_steps, batch_size, flops_per_step,
                            peak_flops_per_device, log_every)
  health = HealthTracker(healthy_ratio, good)
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
    health.observe(history[-1], checkpointer)
    progress.log(p_step, host, p_audio, p_tokens, force=(p_step == end_step))
    if host.get("bad_steps", 0) >= max_bad_steps:
      raise TrainingDiverged(
          f"{int(host['bad_steps'])} consecutive steps up to step {p_step} had a non-finite loss "
          f"or gradient (train.max_bad_steps={max_bad_steps}); loss {host.get('loss')}, grad norm "
          f"{host.get('grad_norm')}, param norm {host.get('param_norm')}. Lower the learning rate "
          "or check the data for NaN/Inf features, then " + _resume_advice(checkpointer))

  def save(step, force=False):
    nonlocal pending
    if not force and step % checkpoint.save_every_steps:
      return
    finish_pending()  # This step's metrics on the host first: they judge the checkpoint.
    pending = None
    if checkpointer.save(step, state, dict(run_state, batches_consumed=batches_consumed),
                         force=True, data_iterator=source):
      health.saved(step, last_metrics)

  validation: List[Dict[str, float]] = []
  evaluator = (_Validator(model, trainer, mesh_obj, make_eval_data, per_host, feature_lengths,
                          shard_info, seed, eval_batches, progress)
               if eval_every and make_eval_data is not None else None)

  step = start_step
  try:
    while step < end_step and not stop.should_stop(step):
      if lock.lost:
        raise run_lock.ModelDirLocked(f"Another trainer took over {model_dir}: stopping.")
      host_batch = next(data)
      batches_consumed += 1
      audio_s, tokens = progress.batch_counts(host_batch)
      global_batch = partitioning_lib.host_batch_to_global(host_batch, mesh_obj)
      state, metrics = trainer.step(state, global_batch)
      step += 1
      finish_pending()
      pending = (step, metrics, audio_s, tokens)
      save(step)
      if evaluator and step % eval_every == 0 and step < end_step:
        validation.append(evaluator(step, state.params))
    finish_pending()
    pending = None
    if evaluator and step > start_step:
      validation.append(evaluator(step, state.params))
    if step > start_step:  # A signal before the first step leaves nothing new to save.
      save(step, force=True)
    if step >= end_step:
      health.finish(checkpointer)
  finally:
    checkpointer.close()
    progress.close()

  return TrainResult(model_dir=model_dir, last_step=step, first_metrics=first_metrics,
                     last_metrics=last_metrics, checkpoint_dir=ckpt_dir,
                     stopped_by_signal=stop.requested and step < end_step,
                     skipped_steps=int(last_metrics.get("skipped_steps", 0)), history=history,
                     chance=dict(getattr(model, "chance_accuracies", dict)()),
                     validation=validation)


class _Validator:
  """`model.eval_fn` averaged over the first `num_batches` validation batches (EVAL_EVERY)."""

  def __init__(self, model, trainer, mesh, make_eval_data, per_host, feature_lengths, shard_info,
               seed, num_batches, progress):
    data = make_eval_data(batch_size=per_host, feature_lengths=feature_lengths,
                          shard_info=shard_info, seed=seed, start_batch=0)
    self.batches = [partitioning_lib.host_batch_to_global(next(data), mesh)
                    for _ in range(num_batches)]
    self.trainer, self.progress = trainer, progress
    self.eval_fn = jax.jit(lambda params, batch, step: (
        trainer_lib.scalar_metrics(model.eval_fn(params, batch, step=step)[1])))

  def __call__(self, step: int, params) -> Dict[str, float]:
    with self.trainer.context():
      rows = [_to_host(self.eval_fn(params, b, step)) for b in self.batches]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    self.progress.writer.write_scalars(step, {f"validation/{k}": v for k, v in mean.items()})
    if jax.process_index() == 0:
      print("[slam_jax] validation " + self.progress.format_line(step, mean), flush=True)
    return dict(mean, step=step)


def _init_encoder(state: trainer_lib.TrainState, model: Any, path: str) -> trainer_lib.TrainState:
  """`state` with its encoder params replaced by the encoder checkpoint at `path`."""
  where = f"train.init_encoder_from={path!r}"
  stored, params = encoder_io.load(path)
  encoder_io.check_compatible(stored, model.encoder_config, where)
  params = encoder_io.relayout_layers(params, model.encoder_config.scan_layers)
  return state.replace(params=encoder_io.graft(state.params, params, where))


def _restore_data_iterator(checkpointer, step: int, data) -> None:
  """Puts `data` at the checkpoint's input position in constant time when the checkpoint holds
  its state (else `data` skips to `start_batch` on its first `next`)."""
  start = time.perf_counter()
  try:
    restored = checkpointer.restore_data_iterator(step, data)
  except ValueError as e:
    from slam_jax.data import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
    if not isinstance(e, pipeline_lib.IteratorStateMismatch):
      raise
    logging.warning("%s. The input pipeline skips to the checkpoint's position instead (time "
                    "grows with the position); the data order is the current pipeline's.", e)
    return
  if restored:
    print(f"[slam_jax] restored the input iterator state of step {step} in "
          f"{time.perf_counter() - start:.2f} s", flush=True)


def _data_state(batches_consumed: int, seed: int, batch_size: int,
                mixture: Optional[str]) -> Dict[str, Any]:
  """What a checkpoint's data/ item holds; RESUME_KEYS are compared on resume."""
  state = {"batches_consumed": int(batches_consumed), "seed": int(seed),
           "process_count": int(jax.process_count()), "batch_size": int(batch_size)}
  if mixture is not None:
    state["mixture_or_task_name"] = str(mixture)
  return state


def _resume_advice(checkpointer: checkpoints_lib.Checkpointer) -> str:
  """The command that goes back to the last-known-good checkpoint."""
  checkpointer.wait()  # Commits a pending last-known-good mark.
  good = checkpointer.last_good()
  if good is None:
    return "start again: no checkpoint of this run is known to be good."
  return (f"resume from the last-known-good checkpoint (step {good['step']}, loss "
          f"{good['loss']:.4g}): rerun the same command with --resume_step={good['step']} "
          "(and e.g. a lower --gin.LEARNING_RATE).")


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
  if result.validation:
    final = result.validation[-1]
    lines.append(f"  validation at step {int(final['step'])} (eval_fn: no dropout, fixed masks): "
                 + ", ".join(f"{k} {final[k]:.4f}" for k in sorted(final)
                             if k == "loss" or k.endswith(("/loss", "accuracy"))))
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
  """Splits argv into gin files, gin bindings (`--gin.KEY=VALUE`) and the resume choice.

  Returns (gin_files, bindings, resume) where resume is False, True (`--resume`: the newest
  readable step) or an int (`--resume_step=N`).
  """
  gin_files, bindings, resume = [], [], False
  for arg in argv:
    if parse_gin_flag(arg, gin_files, bindings):
      continue
    if arg.startswith("--gin_bindings="):
      bindings.append(arg.split("=", 1)[1])
    elif arg == "--resume":
      resume = True if resume is False else resume  # --resume_step=N wins.
    elif arg.startswith("--resume_step="):
      value = arg.split("=", 1)[1]
      if not value.isdigit():
        raise ValueError(f"Flag {arg!r}: give a step number, e.g. --resume_step=4000.")
      resume = int(value)
    elif arg in ("-h", "--help"):
      print(__doc__)
      sys.exit(0)
    else:
      raise ValueError(f"Unknown flag {arg!r}; expected --gin_file=, --gin.KEY=VALUE, --resume "
                       "or --resume_step=N.")
  if not gin_files:
    raise ValueError("Give at least one --gin_file=gin/experiments/<name>.gin.")
  return gin_files, bindings, resume


def _defined_macros():
  return {key[0] for key in gin.config._CONFIG if key[1] == "gin.macro"}  # pylint: disable=protected-access


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str], import_tasks: bool = True) -> None:
  """Parses gin files and overrides; unknown or malformed bindings fail here, before compiling.

  An override of a macro (`TRAIN_STEPS = 5`: no dot in the name) must name a macro the files
  define, so a misspelt one fails instead of being ignored; a malformed override is reported with
  its own text.

  Args:
    gin_files: files, relative to the repo root or the working directory.
    bindings: `KEY = VALUE` overrides.
    import_tasks: import every configurable module incl. the seqio tasks (TensorFlow); False
      imports only the model side (benchmarks on generated data).
  """
  if import_tasks:
    import slam_jax.configurables  # pylint: disable=g-import-not-at-top,unused-import
    import tasks  # pylint: disable=g-import-not-at-top,unused-import  (MIXTURE_OR_TASK_NAME)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  gin.add_config_file_search_path(root)
  gin.add_config_file_search_path(os.getcwd())
  errors = (ValueError, KeyError, TypeError, IOError, SyntaxError, tokenize.TokenError)
  try:
    gin.parse_config_files_and_bindings(gin_files, [], finalize_config=False)
  except errors as e:
    raise ValueError(f"Bad gin configuration ({', '.join(gin_files)}): {e}") from e
  macros = _defined_macros()
  for binding in bindings:
    key = binding.partition("=")[0].strip()
    if key.isidentifier() and key not in macros:
      close = difflib.get_close_matches(key, sorted(macros), n=1)
      raise ValueError(
          f"Override {binding!r}: {key} is not a macro of {', '.join(gin_files)}"
          + (f"; did you mean {close[0]}?" if close else f" (macros: {', '.join(sorted(macros))}).")
          + " Configurable parameters are written Name.param = VALUE.")
    try:
      gin.parse_config(binding)
    except errors as e:
      raise ValueError(f"Bad gin override {binding!r}: {type(e).__name__}: {e}") from e


def exit_code(result: TrainResult) -> int:
  """0 for a finished run, PREEMPTED_EXIT_CODE for one a signal stopped before its last step."""
  return PREEMPTED_EXIT_CODE if result.stopped_by_signal else 0


def main(argv: Sequence[str]) -> TrainResult:
  stop = checkpoints_lib.StopSignal()  # First of all: a SIGTERM from here on stops cleanly.
  try:
    host_memory.tune()  # before JAX starts its threads
    collector.tune()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    jax.config.update("jax_threefry_partitionable", True)
    gin_files, bindings, resume = parse_flags(argv)
    parse_gin(gin_files, bindings)
    partitioning_lib.maybe_initialize_distributed(os.environ.get("SLAM_DISTRIBUTED"))
    if stop.requested:
      print("[slam_jax] stopped by signal before training started", flush=True)
      return TrainResult("", 0, {}, {}, "", stopped_by_signal=True)
    step = None if isinstance(resume, bool) else resume
    result = train(resume=bool(resume is not False), resume_step=step, stop=stop)
  finally:
    stop.restore_handlers()
  print(summarize(result), flush=True)
  return result


if __name__ == "__main__":
  # Run the imported module's main, so gin sees the configurables as `slam_jax.train.*`
  # rather than `__main__.*`.
  from slam_jax import train as _train_module  # pylint: disable=g-import-not-at-top
  sys.exit(_train_module.exit_code(_train_module.main(sys.argv[1:])))
