r"""Fine-tuning loop for any DownstreamModel: `python -m slam_jax.finetune --gin_file=... [--resume]`.

  python -m slam_jax.finetune --gin_file=gin/finetune/demo_ctc.gin \
      --gin.MODEL_DIR="'runs/ctc'" --gin.PRETRAINED="'runs/demo'"     # PRETRAINED unset: scratch

Same machinery as pre-training: the partitioned trainer (mesh, logical rules, jitted donated
step), orbax checkpoints with the data position (resumable), progress lines and TensorBoard.
Fine-tuning specifics:
  - the encoder's params come from PRETRAINED (`restore.restore_encoder_params`); the head is
    fresh; a resumed run restores everything from its own MODEL_DIR instead;
  - separate learning rates for the encoder and the head (by top-level params key, as
    optax.multi_transform would), the encoder frozen (learning rate 0) for
    `freeze_encoder_steps`;
  - the model's options: feature layer, SpecAugment-style masking, decoder (see make_*_model);
  - every `eval_every` steps and at the end: the task's metric_fns on the validation split.
"""

import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from slam_jax import checkpoints as checkpoints_lib
from slam_jax import partitioning as partitioning_lib
from slam_jax import train as train_lib
from slam_jax import trainer as trainer_lib
from slam_jax.finetune import classifier  # pylint: disable=unused-import  (gin)
from slam_jax.finetune import ctc  # pylint: disable=unused-import  (gin)
from slam_jax.finetune import data as data_lib
from slam_jax.finetune import evaluation as evaluate_lib
from slam_jax.finetune import restore as restore_lib
from slam_jax.finetune import task_model
from slam_jax.perf import collector


@gin.configurable
@dataclasses.dataclass(frozen=True)
class FinetuneOptimizerConfig:
  """AdamW with one learning rate for the encoder and one for the head.

  Attributes:
    encoder_learning_rate: peak learning rate of the pre-trained encoder.
    head_learning_rate: peak learning rate of the fresh head.
    warmup_steps: linear warm-up (counted from the end of the freeze for the encoder).
    decay: 'linear' (to 0 at the last step), 'cosine' or 'constant' after warm-up.
    freeze_encoder_steps: the encoder's learning rate is 0 for these first steps.
    b1, b2, eps, weight_decay, clip_norm: AdamW and global-norm clipping (0 = off).
  """

  encoder_learning_rate: float = 5e-4
  head_learning_rate: float = 2e-3
  warmup_steps: int = 50
  decay: str = "linear"
  freeze_encoder_steps: int = 0
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-6
  weight_decay: float = 0.01
  clip_norm: float = 1.0

  def __post_init__(self):
    if self.decay not in ("linear", "cosine", "constant"):
      raise ValueError(f"FinetuneOptimizerConfig.decay={self.decay!r}: use 'linear', 'cosine' "
                       "or 'constant'")


def make_lr_schedule(peak: float, warmup: int, total: int, decay: str,
                     start: int = 0) -> optax.Schedule:
  """0 before `start`; linear warm-up over `warmup` steps; then `decay` until `total`."""
  warmup = max(int(warmup), 1)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32) - start
    ramp = jnp.clip((t + 1.0) / warmup, 0.0, 1.0)
    frac = jnp.clip((t - warmup) / max(total - start - warmup, 1), 0.0, 1.0)
    if decay == "linear":
      tail = 1.0 - frac
    elif decay == "cosine":
      tail = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    else:
      tail = 1.0
    return jnp.where(t < 0, 0.0, peak * ramp * tail)

  return schedule


def scale_by_label_schedules(schedules: Mapping[str, optax.Schedule],
                              label_fn: Callable[[Any], Any]) -> optax.GradientTransformation:
  """Multiplies each update by -schedules[label](step), label from `label_fn(updates)`.

  The per-group learning rate of `optax.multi_transform`, with one shared optimizer state:
  multi_transform's masked inner states hold `MaskedNode` leaves that the trainer's
  logical-sharding map (nn.get_partition_spec) does not accept.
  """

  def init(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    del params
    labels = label_fn(updates)
    rates = {name: schedule(state.count) for name, schedule in schedules.items()}
    updates = jax.tree_util.tree_map(lambda u, label: (-rates[label] * u).astype(u.dtype),
                                     updates, labels)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


def make_finetune_optimizer(config: FinetuneOptimizerConfig, total_steps: int,
                            encoder_key: str = task_model.DownstreamModel.encoder_param_key):
  """(AdamW transform, {'encoder': schedule, 'head': schedule}); the group of a parameter is its
  top-level key (`encoder_key` -> 'encoder', anything else -> 'head')."""
  schedules = {
      "encoder": make_lr_schedule(config.encoder_learning_rate, config.warmup_steps, total_steps,
                                  config.decay, start=config.freeze_encoder_steps),
      "head": make_lr_schedule(config.head_learning_rate, config.warmup_steps, total_steps,
                               config.decay),
  }
  decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim > 1, params)
  labels = lambda params: {k: jax.tree_util.tree_map(
      lambda _, k=k: "encoder" if k == encoder_key else "head", v) for k, v in params.items()}
  parts = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm > 0 else []
  parts += [optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps),
            optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
            scale_by_label_schedules(schedules, labels)]
  return optax.chain(*parts), schedules


@dataclasses.dataclass
class FinetuneResult:
  model_dir: str
  last_step: int
  pretrained: Optional[str]
  last_metrics: Dict[str, float]
  validation: List[Dict[str, float]]
  history: List[Dict[str, float]] = dataclasses.field(default_factory=list)

  @property
  def final_validation(self) -> Dict[str, float]:
    return self.validation[-1] if self.validation else {}


@gin.configurable(denylist=["resume"])
def finetune(*, model_dir: str = gin.REQUIRED, model: task_model.DownstreamModel = gin.REQUIRED,
             mixture_or_task_name: str = gin.REQUIRED, batch_size: int = gin.REQUIRED,
             train_steps: int = gin.REQUIRED, feature_lengths: Mapping[str, int] = gin.REQUIRED,
             pretrained: Optional[str] = None,
             optimizer: FinetuneOptimizerConfig = FinetuneOptimizerConfig(),
             mesh: partitioning_lib.MeshConfig = partitioning_lib.MeshConfig(),
             checkpoint: checkpoints_lib.CheckpointConfig = checkpoints_lib.CheckpointConfig(),
             seed: int = 0, log_every: int = 10, eval_every: int = 0,
             eval_batch_size: Optional[int] = None, eval_max_examples: Optional[int] = None,
             eval_split: str = "validation",
             make_data: Callable[..., Any] = data_lib.make_finetune_iterator,
             resume: bool = False) -> FinetuneResult:
  """Fine-tunes `model` on `mixture_or_task_name` (see the module docstring).

  Args:
    model_dir: checkpoints, TensorBoard, config.gin and validation.json (MODEL_DIR).
    model: a DownstreamModel (gin: @slam_jax.finetune.make_ctc_model() etc.).
    mixture_or_task_name: the downstream task (MIXTURE_OR_TASK_NAME).
    batch_size, train_steps, feature_lengths: BATCH_SIZE, TRAIN_STEPS, TASK_FEATURE_LENGTHS.
    pretrained: pre-training MODEL_DIR / checkpoints dir / step dir (PRETRAINED); None = from
      scratch (the baseline).
    optimizer: learning rates, warm-up, freeze.
    mesh, checkpoint, seed, log_every: as in pre-training.
    eval_every: validation period in steps (0 = only at the end).
    eval_batch_size: rows per validation batch (default batch_size).
    eval_max_examples: cap on validation examples (None = the whole split).
    eval_split: split validated on.
    make_data: `(mixture_or_task_name, batch_size, feature_lengths, extra_features,
      shard_info, seed, start_batch) -> iterator` of numpy batches.
    resume: continue from the newest checkpoint in model_dir.
  """
  if "://" not in model_dir:
    model_dir = os.path.abspath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
  ckpt_dir = os.path.join(model_dir, "checkpoints")
  checkpointer = checkpoints_lib.Checkpointer(ckpt_dir, checkpoint)
  if checkpointer.all_steps() and not resume:
    raise FileExistsError(f"{ckpt_dir} already holds checkpoints {checkpointer.all_steps()}; "
                          "pass --resume to continue that run, or choose another MODEL_DIR.")
  if pretrained:  # Fail before compiling when the path has no checkpoint.
    restore_lib.find_checkpoint(pretrained)

  mesh_obj = partitioning_lib.make_mesh(mesh)
  partitioning_lib.check_batch_divisible(batch_size, mesh_obj)
  rules = partitioning_lib.logical_axis_rules(fsdp=mesh.fsdp)
  shapes, dtypes = model.input_shapes_and_types(batch_size, feature_lengths)
  tx, schedules = make_finetune_optimizer(optimizer, train_steps, model.encoder_param_key)
  trainer = trainer_lib.PartitionedTrainer(
      model, tx, mesh_obj, rules, seed, shapes, dtypes, schedule=schedules["head"],
      cache_key=("slam_jax.finetune", optimizer, train_steps, model.encoder_param_key))
  print(f"[finetune] {type(model).__name__}: {trainer.num_params():,} parameters; task "
        f"{mixture_or_task_name}; {'from ' + pretrained if pretrained else 'from scratch'}",
        flush=True)

  if resume and checkpointer.all_steps():
    start_step, state, data_state = checkpointer.restore(trainer.abstract_state)
    start_batch = int(data_state["batches_consumed"])
    print(f"[finetune] resumed from {ckpt_dir} step {start_step}", flush=True)
  else:
    state, start_step, start_batch = trainer.init_state(), 0, 0
    if pretrained:
      key = model.encoder_param_key
      encoder = restore_lib.restore_encoder_params(pretrained,
                                                   trainer.abstract_state.params[key])
      state = state.replace(params=dict(state.params, **{key: encoder}))
      print(f"[finetune] encoder restored from {restore_lib.find_checkpoint(pretrained)[0]}",
            flush=True)
  with open(os.path.join(model_dir, "config.gin"), "w") as f:
    f.write(gin.config_str())

  data = make_data(mixture_or_task_name=mixture_or_task_name,
                   batch_size=batch_size // jax.process_count(), feature_lengths=feature_lengths,
                   extra_features=tuple(model.extra_features), shard_info=train_lib._shard_info(),  # pylint: disable=protected-access
                   seed=seed, start_batch=start_batch)
  progress = train_lib.ProgressLogger(model_dir, train_steps, batch_size, None, None, log_every)
  predict_fn = jax.jit(model.predict)
  eval_loss_fn = jax.jit(lambda p, b: model.loss_fn(p, b, None))

  def validate(step: int, params) -> Dict[str, float]:
    t0 = time.perf_counter()
    with trainer.context():
      results, _ = evaluate_lib.evaluate_params(
          model, params, mixture_or_task_name, feature_lengths=feature_lengths,
          batch_size=eval_batch_size or batch_size, split=eval_split,
          max_examples=eval_max_examples, predict_fn=predict_fn, loss_fn=eval_loss_fn)
    progress.writer.write_scalars(step, {f"validation/{k}": v for k, v in results.items()})
    print(f"[finetune] step {step} {eval_split}: {evaluate_lib.format_metrics(results)} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return dict(results, step=step)

  stop = checkpoints_lib.StopSignal()
  validation, history, last = [], [], {}
  step, batches = start_step, start_batch
  try:
    while step < train_steps and not stop.requested:
      host_batch = next(data)
      batches += 1
      model.check_batch(host_batch)
      audio_s, tokens = progress.batch_counts(host_batch)
      state, metrics = trainer.step(state, partitioning_lib.host_batch_to_global(host_batch,
                                                                                 mesh_obj))
      step += 1
      last = train_lib._to_host(metrics)  # pylint: disable=protected-access
      last["learning_rate/encoder"] = float(schedules["encoder"](step - 1))
      history.append(dict(last, step=step))
      progress.log(step, last, audio_s, tokens, force=step == train_steps)
      if step % checkpoint.save_every_steps == 0:
        checkpointer.save(step, state, {"batches_consumed": batches, "seed": seed})
      if eval_every and step % eval_every == 0 and step < train_steps:
        validation.append(validate(step, state.params))
    checkpointer.save(step, state, {"batches_consumed": batches, "seed": seed}, force=True)
    validation.append(validate(step, state.params))
  finally:
    checkpointer.close()
    progress.close()
    stop.restore_handlers()
  with open(os.path.join(model_dir, "validation.json"), "w") as f:
    json.dump({"pretrained": pretrained, "task": mixture_or_task_name, "validation": validation},
              f, indent=1)
  return FinetuneResult(model_dir=model_dir, last_step=step, pretrained=pretrained,
                        last_metrics=last, validation=validation, history=history)


def main(argv: Sequence[str]) -> FinetuneResult:
  collector.tune()
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  jax.config.update("jax_threefry_partitionable", True)
  gin_files, bindings, resume = train_lib.parse_flags(argv)
  train_lib.parse_gin(gin_files, bindings)
  result = finetune(resume=resume)
  print(f"[finetune] finished at step {result.last_step}; validation: "
        f"{evaluate_lib.format_metrics(result.final_validation)}", flush=True)
  return result
