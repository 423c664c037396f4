"""Train state, optimizer, and the pure partitioned train step.

`make_train_step` returns a function `(state, batch) -> (state, metrics)` that the `Trainer` jits
with explicit in/out shardings and a donated state. Everything random inside a step comes from
`fold_in(PRNGKey(seed), step)`, so a resumed run draws the same masks and dropout as an
uninterrupted one.
"""

import collections
import dataclasses
import logging
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

import clu.metrics
import flax
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from slam_jax import optim as optim_lib
from slam_jax import partitioning as partitioning_lib

PyTree = Any
Batch = Dict[str, jnp.ndarray]
Metrics = Dict[str, jnp.ndarray]


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds besides the data position.

  Attributes:
    step: number of optimizer steps taken (updates skipped for non-finite gradients count too).
    params: model parameters (float32).
    opt_state: optax state.
    bad_steps: consecutive steps whose loss or gradients were not finite.
    skipped_steps: all steps skipped so far.
  """

  step: jnp.ndarray
  params: PyTree
  opt_state: PyTree
  bad_steps: jnp.ndarray
  skipped_steps: jnp.ndarray


OPTIMIZERS = ("adamw", "adamw_optax", "adafactor")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW or Adafactor with linear warm-up then decay, and global-norm clipping.

  Defaults follow w2v-BERT/SLAM's Adam (beta2 0.98) with a Transformer schedule; see gin/runs.

  Attributes:
    name: 'adamw' (`slam_jax.optim.adamw`: clipping and AdamW in one pass per leaf),
      'adamw_optax' (the same math as an optax chain; the reference it is tested against), or
      'adafactor'.
    learning_rate: peak learning rate reached after warm-up.
    warmup_steps: linear warm-up length.
    decay: 'rsqrt' (Transformer), 'cosine' (to `end_fraction` at `total_steps`), or 'constant'.
    end_fraction: final learning rate / peak for cosine decay.
    b1, b2, eps: Adam moments.
    weight_decay: decoupled decay, applied to matrices only (not norms, biases or embeddings' scales).
    clip_norm: global gradient-norm clip; 0 disables.
  """

  name: str = "adamw"
  learning_rate: float = 1e-3
  warmup_steps: int = 1000
  decay: str = "rsqrt"
  end_fraction: float = 0.0
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-6
  weight_decay: float = 0.01
  clip_norm: float = 1.0

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"OptimizerConfig.name={self.name!r}: use one of {OPTIMIZERS}.")
    if self.decay not in ("rsqrt", "cosine", "constant"):
      raise ValueError(f"OptimizerConfig.decay={self.decay!r}: use 'rsqrt', 'cosine' or 'constant'.")


def make_schedule(config: OptimizerConfig, total_steps: int) -> optax.Schedule:
  warmup = max(config.warmup_steps, 1)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    ramp = jnp.minimum(1.0, (step + 1.0) / warmup)
    if config.decay == "rsqrt":
      decay = jnp.sqrt(warmup / jnp.maximum(step + 1.0, warmup))
    elif config.decay == "cosine":
      frac = jnp.clip((step - warmup) / max(total_steps - warmup, 1), 0.0, 1.0)
      cos = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
      decay = config.end_fraction + (1.0 - config.end_fraction) * cos
    else:
      decay = 1.0
    return config.learning_rate * ramp * decay

  return schedule


def schedule_key(config: OptimizerConfig, total_steps: int) -> Hashable:
  """What `make_optimizer(config, total_steps)` computes depends on: the config, and the run's
  length only for cosine decay (a `PartitionedTrainer` cache key, so that runs of one experiment
  with another TRAIN_STEPS share the compiled step)."""
  return config, (total_steps if config.decay == "cosine" else None)


def _decay_mask(params: PyTree) -> PyTree:
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(config: OptimizerConfig, total_steps: int) -> optax.GradientTransformation:
  schedule = make_schedule(config, total_steps)
  if config.name == "adamw":
    return optim_lib.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                           weight_decay=config.weight_decay, mask=_decay_mask,
                           clip_norm=config.clip_norm)
  parts = []
  if config.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.clip_norm))
  if config.name == "adamw_optax":
    parts.append(optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                             weight_decay=config.weight_decay, mask=_decay_mask))
  else:
    parts.append(optax.adafactor(schedule, weight_decay_rate=config.weight_decay or None,
                                 weight_decay_mask=_decay_mask))
  return optax.chain(*parts)


def init_train_state(params: PyTree, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    bad_steps=jnp.zeros((), jnp.int32), skipped_steps=jnp.zeros((), jnp.int32))


LossFn = Callable[..., Tuple[jnp.ndarray, Metrics]]


def scalar_metrics(metrics: Dict[str, Any]) -> Metrics:
  """Plain scalars of a metrics dict: `clu.metrics.Metric` values (t5x's loss_fn) are computed."""
  return {k: v.compute() if isinstance(v, clu.metrics.Metric) else v for k, v in metrics.items()}


def _split_microbatches(batch: Batch, num_microbatches: int) -> Batch:
  def split(x):
    if x.shape[0] % num_microbatches:
      raise ValueError(f"Batch size {x.shape[0]} is not divisible by "
                       f"num_microbatches={num_microbatches}.")
    return x.reshape((num_microbatches, x.shape[0] // num_microbatches) + x.shape[1:])
  return jax.tree_util.tree_map(split, batch)


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, seed: int,
                    num_microbatches: int = 1,
                    schedule: Optional[optax.Schedule] = None,
                    prepare_fn: Optional[Callable[..., Batch]] = None) -> Callable[[TrainState, Batch],
                                                                          Tuple[TrainState, Metrics]]:
  """Builds the pure train step.

  Args:
    loss_fn: `(params, batch, rng, step) -> (loss, metrics)`; metrics are scalars or clu metrics.
    tx: the optimizer.
    seed: run seed; step `t` uses `fold_in(PRNGKey(seed), t)`.
    num_microbatches: gradient accumulation: the batch is split on its leading dim and gradients
      are averaged over a `lax.scan`, so peak activation memory is that of one microbatch.
    schedule: learning-rate schedule, only for logging.
    prepare_fn: optional `(batch, rng, step) -> batch` run on the whole batch before it is split
      into microbatches (the model draws its masks and counts there, so that the microbatches'
      mean loss is the full-batch loss: `SlamModel.prepare_batch`).

  A step whose loss or gradient norm is not finite leaves params and optimizer state untouched and
  increments `bad_steps` (reset by the next good step) and `skipped_steps`.
  """

  def grads_of(params, batch, rng, step, scale=1.0):
    """(loss, metrics, grads of scale * loss): a microbatch's share of the averaged gradient comes
    out of differentiation already divided (a scalar on the cotangent, no pass over the grads)."""
    def scaled(*args):
      loss, metrics = loss_fn(*args)
      return loss * scale, (loss, scalar_metrics(metrics))
    (_, (loss, metrics)), grads = jax.value_and_grad(scaled, has_aux=True)(params, batch, rng,
                                                                            step)
    return loss, metrics, grads

  def step_fn(state: TrainState, batch: Batch) -> Tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
    if num_microbatches == 1:
      loss, metrics, grads = grads_of(state.params, batch, rng, state.step)
    else:
      n = num_microbatches
      if prepare_fn is not None:
        batch = prepare_fn(batch, rng, state.step)
      micro = _split_microbatches(batch, n)
      micro_rng = lambda index: jax.random.fold_in(rng, index)
      # The first microbatch starts the sum and the rest are added in a scan: no pass that adds
      # gradients to zeros, and the first microbatch's backward can overlap the next one's
      # forward (encoder_cpu.gin, 2 microbatches: ~4% faster than a scan over all of them from
      # zeros, README Benchmarks).
      first = grads_of(state.params, jax.tree_util.tree_map(lambda x: x[0], micro),
                       micro_rng(0), state.step, 1.0 / n)

      def body(carry, inputs):
        index, mb = inputs
        out = grads_of(state.params, mb, micro_rng(index), state.step, 1.0 / n)
        return jax.tree_util.tree_map(jnp.add, carry, out), None

      rest = jax.tree_util.tree_map(lambda x: x[1:], micro)
      (loss, metrics, grads), _ = jax.lax.scan(body, first, (jnp.arange(1, n), rest))
      loss, metrics = jax.tree_util.tree_map(lambda x: x / n, (loss, metrics))

    grad_norm = optim_lib.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    # A conditional, not a select per state leaf: the update runs only on finite steps, and a
    # finite step makes no extra pass over params and optimizer state to choose new or old.
    def update(params_and_opt):
      params, opt_state = params_and_opt
      # grad_norm as an extra argument: optim.adamw clips with it instead of a second pass over
      # the gradients (a norm inside the conditional is not shared with the one outside it);
      # optax's transforms ignore it, and a plain GradientTransformation is not offered it.
      extra = ({"grad_norm": grad_norm}
               if isinstance(tx, optax.GradientTransformationExtraArgs) else {})
      updates, new_opt_state = tx.update(grads, opt_state, params, **extra)
      return (optax.apply_updates(params, updates), new_opt_state,
              optim_lib.global_norm(updates))

    def skip(params_and_opt):
      params, opt_state = params_and_opt
      return params, opt_state, jnp.zeros((), jnp.float32)

    new_params, new_opt_state, update_norm = jax.lax.cond(
        finite, update, skip, (state.params, state.opt_state))
    new_state = TrainState(
        step=state.step + 1,
        params=new_params,
        opt_state=new_opt_state,
        bad_steps=jnp.where(finite, 0, state.bad_steps + 1).astype(jnp.int32),
        skipped_steps=(state.skipped_steps + jnp.where(finite, 0, 1)).astype(jnp.int32),
    )
    metrics = dict(metrics)
    metrics.update(
        loss=loss,
        grad_norm=grad_norm,
        param_norm=optim_lib.global_norm(state.params),
        update_norm=update_norm,
        nonfinite=jnp.logical_not(finite).astype(jnp.int32),
        bad_steps=new_state.bad_steps,
        skipped_steps=new_state.skipped_steps,
    )
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step)
    return new_state, metrics

  return step_fn


def fingerprint(obj: Any) -> Optional[str]:
  """A value fingerprint of a model: its class and the repr of its attributes (frozen config
  dataclasses and flax modules print every field), or None when some attribute has no value repr
  (`<... at 0x...>`), so that two models with the same fingerprint trace to the same program."""
  text = f"{type(obj).__module__}.{type(obj).__qualname__}{sorted(vars(obj).items())!r}"
  return None if " at 0x" in text else text


# Programs compiled in this process, by everything they were built from (see PartitionedTrainer's
# `cache_key`), newest last. A second `train()` of the same experiment in one process (a sweep, a
# notebook, stage 2 after stage 1, a resume) takes the compiled step from here instead of tracing
# and lowering it again: ~8 CPU-s for the tiny model even when XLA's persistent cache then finds
# the binary, ~all of a short run's start-up.
_PROGRAMS: "collections.OrderedDict[Hashable, Any]" = collections.OrderedDict()
_MAX_PROGRAMS = 16
# jax settings that change what a traced program computes (part of a shared program's key).
_TRACE_FLAGS = ("jax_enable_x64", "jax_numpy_rank_promotion", "jax_threefry_partitionable",
                "jax_default_matmul_precision", "jax_default_prng_impl",
                "jax_numpy_dtype_promotion")


def _cached(key: Optional[Hashable], build: Callable[[], Any]) -> Any:
  if key is None:
    return build()
  if key in _PROGRAMS:
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]
  value = _PROGRAMS[key] = build()
  while len(_PROGRAMS) > _MAX_PROGRAMS:
    _PROGRAMS.popitem(last=False)
  return value


def clear_program_cache() -> None:
  """Forgets the compiled programs `PartitionedTrainer`s of this process share."""
  _PROGRAMS.clear()


class PartitionedTrainer:
  """Owns the mesh, the shardings and the jitted step; knows nothing of data or checkpoints.

  The state is built from shapes: `eval_shape(init)` gives logical partition specs, which become
  NamedShardings, and `jit(init, out_shardings=...)` materialises each shard on its own device.

  With a `cache_key` (hashable: what the caller built `tx` from, e.g. the optimizer config and the
  number of steps), trainers of this process whose key, model (`fingerprint`), mesh, rules,
  seed, microbatches and input shapes are equal share their compiled init and step.
  """

  def __init__(self, model, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
               rules: partitioning_lib.LogicalRules, seed: int, input_shapes: Dict[str, Tuple],
               input_types: Dict[str, Any], num_microbatches: int = 1,
               schedule: Optional[optax.Schedule] = None,
               cache_key: Optional[Hashable] = None):
    self.model = model
    self.tx = tx
    self.mesh = mesh
    self.rules = tuple(rules)
    self.seed = seed
    self.input_shapes = dict(input_shapes)
    self.input_types = dict(input_types)
    self._cache_key = None if cache_key is None else (
        cache_key, seed, num_microbatches, schedule is not None, mesh, self.rules,
        tuple(sorted((k, tuple(v)) for k, v in self.input_shapes.items())),
        tuple(sorted((k, str(jnp.dtype(v))) for k, v in self.input_types.items())))

    def init_fn(rng):
      variables = model.get_initial_variables(rng, self.input_shapes, self.input_types)
      return init_train_state(partitioning_lib.boxed_params(variables), tx)

    # Initialisation runs without activation rules: flax applies the rules to boxed params while
    # DenseGeneral reshapes its kernel, which fails for multi-axis kernels; params get their
    # shardings from `out_shardings` instead.
    def shardings():
      boxed = jax.eval_shape(init_fn, jax.random.PRNGKey(seed))
      state_shardings = partitioning_lib.tree_shardings(boxed, mesh, self.rules)
      return state_shardings, jax.tree_util.tree_map(
          lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
          partitioning_lib.unbox(boxed), state_shardings)

    self.state_shardings, self.abstract_state = _cached(self._program_key("state"), shardings)
    self._init = jax.jit(lambda rng: partitioning_lib.unbox(init_fn(rng)),
                         out_shardings=self.state_shardings)
    self.batch_sharding = partitioning_lib.batch_sharding(mesh)

    def loss_fn(params, batch, rng, step):
      return model.loss_fn(params, batch, rng, step=step)

    step_fn = make_train_step(loss_fn, tx, seed, num_microbatches, schedule,
                              prepare_fn=getattr(model, "prepare_batch", None))
    self._step = jax.jit(step_fn, in_shardings=(self.state_shardings, self.batch_sharding),
                         out_shardings=(self.state_shardings, None), donate_argnums=(0,))
    self._compiled = None

  def context(self):
    """Mesh + logical rules in scope, so `with_logical_constraint` inside the model takes effect."""
    return _Context(self.mesh, partitioning_lib.activation_rules(self.rules))

  def _program_key(self, *what) -> Optional[Hashable]:
    """The key of one of this trainer's programs in `_PROGRAMS`; None = not shared. The model's
    fingerprint is taken now: `SlamModel.check_vocabulary` may change the model after __init__."""
    if self._cache_key is None:
      return None
    model = fingerprint(self.model)
    if model is None:
      return None
    flags = tuple(getattr(jax.config, name) for name in _TRACE_FLAGS)
    return (what, model, flags) + self._cache_key

  def init_state(self) -> TrainState:
    rng = jax.random.PRNGKey(self.seed)
    key = self._program_key("init")
    if key is None:
      return self._init(rng)
    return _cached(key, lambda: self._init.lower(rng).compile())(rng)

  def abstract_batch(self, global_batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((global_batch_size,) + tuple(s[1:]), self.input_types[k],
                                    sharding=self.batch_sharding)
            for k, s in self.input_shapes.items()}

  def compile(self, global_batch_size: int):
    """AOT-compiles the step; returns the compiled executable (cost and memory analysis)."""
    def build():
      with self.context():
        return self._step.lower(self.abstract_state,
                                self.abstract_batch(global_batch_size)).compile()

    self._compiled = _cached(self._program_key("step", global_batch_size), build)
    return self._compiled

  def step(self, state: TrainState, batch: Batch) -> Tuple[TrainState, Metrics]:
    with self.context():
      if self._compiled is not None:
        return self._compiled(state, batch)
      return self._step(state, batch)

  def num_params(self) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(self.abstract_state.params)))


class _Context:
  """`with jax.set_mesh(mesh), nn.logical_axis_rules(rules):` as one reusable object."""

  def __init__(self, mesh, rules):
    self._mesh_cm = jax.set_mesh(mesh)
    self._rules_cm = nn.logical_axis_rules(rules)

  def __enter__(self):
    self._mesh_cm.__enter__()
    self._rules_cm.__enter__()
    return self

  def __exit__(self, *exc):
    self._rules_cm.__exit__(*exc)
    return self._mesh_cm.__exit__(*exc)
