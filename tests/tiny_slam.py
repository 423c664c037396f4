"""The tiny SLAM model, batch and optimizer that the step-equivalence tests share.

tests/test_partitioning.py (our step on 8 simulated devices) and tests/test_t5x_trainer.py (t5x's
step) both compare with the same one-device run of our trainer, computed once per worker by
conftest's `tiny_slam_one_device` fixture: one compile of the reference instead of one per test.
"""

from typing import Any, Dict, List, Optional

import numpy as np

LENGTHS = {"speech": 48, "text": 12}
VOCAB, ROWS, SEED, TOTAL_STEPS = 128, 8, 3, 10


def optimizer_config():
  from slam_jax import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  return trainer_lib.OptimizerConfig(learning_rate=1e-3, warmup_steps=1, clip_norm=1.0)


def model(optimizer_def: Optional[Any] = None):
  """Every objective, dropout on, two codebooks, 4 heads (the 2 x 4 mesh splits them); stage 2
  from step 1 and a Gumbel temperature of 2.0 then 1.0, so that two steps show both switches."""
  from slam_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from slam_jax.losses import compose  # pylint: disable=g-import-not-at-top
  from slam_jax.models import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  from slam_jax.models import quantizer as quantizer_lib  # pylint: disable=g-import-not-at-top
  return model_lib.SlamModel(
      encoder_lib.get_preset("tiny", num_heads=4, dropout_rate=0.1),
      quantizer_lib.QuantizerConfig(num_groups=2, num_entries=8, code_dim=16,
                                    temperature_decay=0.5, temperature_end=0.1),
      objectives=compose.ObjectiveConfig(num_distractors=6),
      loss_weights=compose.LossWeightSchedule(stage2_start_step=1),
      optimizer_def=optimizer_def)


def batch() -> Dict[str, np.ndarray]:
  """8 generated rows, kinds in turn (text, speech, paired, text, ...), as host numpy."""
  from slam_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  return synthetic.synthetic_batch(np.random.default_rng(0), ROWS, LENGTHS["speech"],
                                   LENGTHS["text"], VOCAB)


def train(data: int = 1, model_axis: int = 1, steps: int = 2) -> Dict[str, List[Any]]:
  """`steps` steps of our trainer on a (data x model) mesh of the first devices, on `batch()`.

  Returns {"params": [before, after step 1, ...] as numpy trees, "metrics": [per step, floats],
  "sharded": whether some parameter's first shard is smaller than the parameter}.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from slam_jax import partitioning as partitioning_lib  # pylint: disable=g-import-not-at-top
  from slam_jax import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  the_model = model()
  shapes, dtypes = the_model.input_shapes_and_types(ROWS, LENGTHS)
  mesh = partitioning_lib.make_mesh(partitioning_lib.MeshConfig(data, model_axis),
                                    jax.devices()[:data * model_axis])
  trainer = trainer_lib.PartitionedTrainer(
      the_model, trainer_lib.make_optimizer(optimizer_config(), TOTAL_STEPS), mesh,
      partitioning_lib.logical_axis_rules(), SEED, shapes, dtypes)
  state = trainer.init_state()
  result = {"params": [jax.device_get(state.params)], "metrics": []}
  result["sharded"] = any(
      tuple(leaf.addressable_shards[0].data.shape) != tuple(leaf.shape)
      for leaf in jax.tree_util.tree_leaves(state.params))
  global_batch = partitioning_lib.host_batch_to_global(batch(), mesh)
  for _ in range(steps):  # The step donates the state: keep host copies.
    state, metrics = trainer.step(state, global_batch)
    result["metrics"].append({k: float(v) for k, v in jax.device_get(metrics).items()})
    result["params"].append(jax.device_get(state.params))
  return result
