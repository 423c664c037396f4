"""Glue for running SlamModel under t5x's own trainer (`python -m t5x.train`, gin/t5x/).

  SlamTrainer      t5x `trainer.Trainer` whose train and eval steps hand the train state's step to
                   the model (`SlamModel.at_step`): the staged loss weights and the Gumbel
                   temperature follow the step as under slam_jax.train; with num_microbatches = n
                   each microbatch's loss is scaled by 1/n, so t5x's summed gradient is the mean
                   of the microbatch gradients, as in slam_jax.trainer.
                   A train state handed in (t5x.train restores one) gets its optimizer state's
                   fresh dtypes back (see `counters_as_initialised`).
  make_optimizer   t5x `OptaxWrapper` around slam_jax.optim.adamw (the same clipped AdamW and
                   learning-rate schedule as slam_jax.train, from the same OptimizerConfig).
  learning_rate    that schedule, for t5x's learning-rate metric.

t5x's plain `trainer.Trainer` also runs SlamModel, but its loss never sees the step (always 0): the
gin files in gin/t5x/ select SlamTrainer.
"""

import functools
from typing import Optional

import gin
import jax
import jax.numpy as jnp
import optax
from t5x import optimizers as t5x_optimizers
from t5x import train_state as t5x_train_state
from t5x import trainer as t5x_trainer

from slam_jax import optim as optim_lib
from slam_jax import trainer as trainer_lib


def _adamw_state_axes(state: optim_lib.AdamWState, params_axes) -> optim_lib.AdamWState:
  return optim_lib.AdamWState(count=None, mu=params_axes, nu=params_axes)


# t5x derives the optimizer state's partitioning from a table keyed by optax state type (its
# documented extension point); AdamW's moments are shaped and partitioned like the params.
t5x_optimizers.OptaxStatePartitionRules._RULES[optim_lib.AdamWState] = _adamw_state_axes  # pylint: disable=protected-access


@gin.configurable(module="slam_jax.t5x_trainer")
def make_optimizer(config: trainer_lib.OptimizerConfig = gin.REQUIRED,
                   total_steps: int = gin.REQUIRED) -> t5x_optimizers.OptaxWrapper:
  """t5x optimizer def: `OptaxWrapper(slam_jax.trainer.make_optimizer(config, total_steps))`."""
  return t5x_optimizers.OptaxWrapper(trainer_lib.make_optimizer(config, total_steps))


@gin.configurable(module="slam_jax.t5x_trainer")
def learning_rate(config: trainer_lib.OptimizerConfig = gin.REQUIRED,
                  total_steps: int = gin.REQUIRED) -> optax.Schedule:
  """The optimizer's schedule (t5x's `Trainer.learning_rate_fn`: only logged, the update uses
  the schedule inside the optimizer)."""
  return trainer_lib.make_schedule(config, total_steps)


def counters_as_initialised(train_state, optimizer_def):
  """`train_state` with its optimizer state in the dtypes a fresh `optimizer_def.init_state` has.

  t5x's checkpointer writes the arrays it does not partition cast to `SaveCheckpointConfig.dtype`
  (float32), so a restored state's step and AdamW count come back float32: the restarted train
  step is then another program (every restart compiles again; XLA's persistent cache misses)
  and a float32 counter stops counting at 2**24. Cast back here, on the arrays' own devices.
  """
  if not isinstance(train_state, t5x_train_state.FlaxOptimTrainState):
    return train_state
  optimizer = train_state._optimizer  # pylint: disable=protected-access
  fresh = jax.eval_shape(optimizer_def.init_state, train_state.params)

  def cast(x, want):
    if jnp.dtype(x.dtype) == jnp.dtype(want.dtype):
      return x
    if not isinstance(x, jax.Array):
      return jnp.asarray(x, want.dtype)
    sharding = x.sharding
    if isinstance(sharding, jax.sharding.NamedSharding) and len(sharding.spec) > x.ndim:
      # t5x restores scalars with a rank-1 spec P(None,); jit wants P() for them.
      sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return jax.jit(lambda v: v.astype(want.dtype), out_shardings=sharding)(x)

  state = jax.tree_util.tree_map(cast, optimizer.state, fresh)
  return train_state.replace(_optimizer=optimizer.replace(state=state))


@gin.configurable(module="slam_jax.t5x_trainer")
class SlamTrainer(t5x_trainer.Trainer):
  """t5x Trainer that passes the train state's step to `SlamModel.loss_fn` / `eval_fn`.

  Constructor arguments as `t5x.trainer.Trainer` (bind `learning_rate_fn` and
  `num_microbatches` on SlamTrainer in gin). The dropout/mask key is t5x's
  `fold_in(PRNGKey(seed), step)`, the same as slam_jax.trainer's for the same seed.
  """

  def __init__(self, model, train_state, **kwargs):
    super().__init__(model=model, train_state=counters_as_initialised(
        train_state, model.optimizer_def), **kwargs)

  def _loss_scale(self) -> float:
    n: Optional[int] = self._num_microbatches
    return 1.0 / n if n and n > 1 else 1.0

  @functools.cached_property
  def _partitioned_train_step(self):

    def train_step(train_state, batch):
      return t5x_trainer.train_with_lr(
          train_state, batch,
          learning_rate=self._learning_rate_fn(train_state.step),
          dropout_rng=self._get_step_rng(train_state.step),
          model=self._model.at_step(train_state.step, self._loss_scale()),
          num_microbatches=self._num_microbatches,
          weight_metrics_computer=self._weight_metrics_computer,
          data_partition_spec=self._partitioner.data_partition_spec)

    return self._partitioner.partition(
        train_step,
        in_axis_resources=(self._train_state_axes, self._partitioner.data_partition_spec),
        out_axis_resources=(self._train_state_axes, None),
        donate_argnums=(0,))

  @functools.cached_property
  def _partitioned_eval_step(self):

    def eval_step(train_state, batch):
      return t5x_trainer.eval_step(self._model.at_step(train_state.step), train_state, batch)

    return self._partitioner.partition(
        eval_step,
        in_axis_resources=(self._train_state_axes, self._partitioner.data_partition_spec),
        out_axis_resources=None)
