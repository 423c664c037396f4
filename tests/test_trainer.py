"""Tests for slam_jax/trainer.py on a toy least-squares model (the real model: tests/test_train.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from slam_jax import partitioning as partitioning_lib
from slam_jax import trainer as trainer_lib


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("embed", "mlp")),
                   (x.shape[-1], 3))
    return x @ w


class ToyModel:
  """Minimal object with the SlamModel interface the trainer uses."""

  compute_dtype = jnp.float32

  def __init__(self):
    self.module = _Linear()

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    return self.module.init(rng, jnp.zeros(input_shapes["x"], jnp.float32))

  def loss_fn(self, params, batch, dropout_rng, step=0):
    del dropout_rng, step
    pred = self.module.apply({"params": params}, batch["x"])
    loss = jnp.mean(jnp.square(pred - batch["y"]))
    return loss, {"toy/loss": loss}


def _batch(seed=0, n=8, nan=False):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 4)).astype(np.float32)
  if nan:
    x[0, 0] = np.nan
  return {"x": x, "y": rng.standard_normal((n, 3)).astype(np.float32)}


class WeightedToyModel(ToyModel):
  """Rows carry weights (like a loss's kinds) unevenly spread over the microbatches; the model
  normalises by the whole batch's weight, which its `prepare_batch` stores per row."""

  def __init__(self):
    super().__init__()
    self.prepared_rows = []

  def prepare_batch(self, batch, rng, step):
    del rng, step
    self.prepared_rows.append(batch["x"].shape[0])  # trace-time spy: the whole batch
    n = batch["x"].shape[0]
    return dict(batch, count=jnp.full((n,), jnp.sum(batch["w"])), rows=jnp.full((n,), float(n)))

  def loss_fn(self, params, batch, dropout_rng, step=0):
    del dropout_rng, step
    err = jnp.sum(jnp.square(self.module.apply({"params": params}, batch["x"]) - batch["y"]), -1)
    n = batch["x"].shape[0]
    norm = (batch["count"][0] * n / batch["rows"][0] if "count" in batch
            else jnp.sum(batch["w"]))
    loss = jnp.sum(batch["w"] * err) / norm
    return loss, {"toy/loss": loss}


def _trainer(num_microbatches=1, lr=0.1, model=None, cache_key=None):
  model = model or ToyModel()
  mesh = partitioning_lib.make_mesh(partitioning_lib.MeshConfig())
  cfg = trainer_lib.OptimizerConfig(learning_rate=lr, warmup_steps=1, decay="constant",
                                    weight_decay=0.0, clip_norm=0.0)
  tx = trainer_lib.make_optimizer(cfg, 100)
  return trainer_lib.PartitionedTrainer(
      model, tx, mesh, partitioning_lib.logical_axis_rules(), seed=0,
      input_shapes={"x": (8, 4), "y": (8, 3)}, input_types={"x": jnp.float32, "y": jnp.float32},
      num_microbatches=num_microbatches, cache_key=cache_key)


def test_schedule_warmup_then_rsqrt():
  cfg = trainer_lib.OptimizerConfig(learning_rate=1.0, warmup_steps=10, decay="rsqrt")
  sched = trainer_lib.make_schedule(cfg, 100)
  np.testing.assert_allclose(sched(0), 0.1, rtol=1e-6)
  np.testing.assert_allclose(sched(9), 1.0, rtol=1e-6)
  np.testing.assert_allclose(sched(39), 0.5, rtol=1e-6)  # sqrt(10 / 40)


def test_schedule_cosine_reaches_end_fraction():
  cfg = trainer_lib.OptimizerConfig(learning_rate=2.0, warmup_steps=10, decay="cosine",
                                    end_fraction=0.1)
  sched = trainer_lib.make_schedule(cfg, 110)
  np.testing.assert_allclose(sched(110), 0.2, rtol=1e-5)
  np.testing.assert_allclose(sched(60), 2.0 * (0.1 + 0.9 * 0.5), rtol=1e-5)


def test_schedule_key_holds_the_length_only_for_cosine():
  rsqrt = trainer_lib.OptimizerConfig(decay="rsqrt")
  cosine = trainer_lib.OptimizerConfig(decay="cosine")
  assert trainer_lib.schedule_key(rsqrt, 10) == trainer_lib.schedule_key(rsqrt, 20)
  assert trainer_lib.schedule_key(cosine, 10) != trainer_lib.schedule_key(cosine, 20)
  assert trainer_lib.schedule_key(rsqrt, 10) != trainer_lib.schedule_key(cosine, 10)


def test_bad_optimizer_name_names_field():
  with pytest.raises(ValueError, match="OptimizerConfig.name"):
    trainer_lib.OptimizerConfig(name="sgdd")


def test_loss_falls_and_matches_plain_adam():
  trainer = _trainer()
  state = trainer.init_state()
  params0 = jax.device_get(state.params)
  batch = _batch()
  losses = []
  for _ in range(5):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0]
  # Reference: the same 5 Adam steps written directly with optax.
  tx = optax.adamw(0.1, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.0)
  params, opt = params0, None
  opt = tx.init(params)
  model = ToyModel()
  for _ in range(5):
    grads = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
    updates, opt = tx.update(grads, opt, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(state.params["w"], params["w"], rtol=1e-5, atol=1e-6)
  assert int(state.step) == 5


def test_nonfinite_batch_is_skipped_and_counted():
  trainer = _trainer()
  state = trainer.init_state()
  state, _ = trainer.step(state, _batch(0))
  before = jax.device_get(state.params)
  state, metrics = trainer.step(state, _batch(1, nan=True))
  np.testing.assert_array_equal(jax.device_get(state.params)["w"], before["w"])
  assert int(metrics["nonfinite"]) == 1 and int(state.bad_steps) == 1
  state, _ = trainer.step(state, _batch(1, nan=True))
  assert int(state.bad_steps) == 2 and int(state.skipped_steps) == 2
  state, metrics = trainer.step(state, _batch(2))
  assert int(state.bad_steps) == 0 and int(state.skipped_steps) == 2
  assert not np.array_equal(jax.device_get(state.params)["w"], before["w"])


@pytest.mark.parametrize("num_microbatches", [2, 4])
def test_microbatches_match_full_batch(num_microbatches):
  batch = _batch(3)
  full = _trainer(num_microbatches=1)
  micro = _trainer(num_microbatches=num_microbatches)
  s_full, m_full = full.step(full.init_state(), batch)
  s_micro, m_micro = micro.step(micro.init_state(), batch)
  # Mean of per-microbatch mean losses == full mean loss (equal microbatch sizes), and the summed
  # gradient is the mean one (Adam's first step alone would not see a wrong scale; its norm does).
  for key in ("loss", "toy/loss", "grad_norm"):
    np.testing.assert_allclose(m_full[key], m_micro[key], rtol=1e-5, err_msg=key)
  np.testing.assert_allclose(s_full.params["w"], s_micro.params["w"], rtol=1e-5, atol=1e-6)


def test_model_prepare_batch_runs_on_the_whole_batch_before_the_split():
  batch = dict(_batch(4), w=np.array([1, 1, 1, 1, 0, 0, 0, 1], np.float32))  # 4 rows vs 1
  full = _trainer(num_microbatches=1, model=WeightedToyModel())
  micro_model = WeightedToyModel()
  micro = _trainer(num_microbatches=2, model=micro_model)
  _, m_full = full.step(full.init_state(), batch)
  _, m_micro = micro.step(micro.init_state(), batch)
  assert micro_model.prepared_rows == [8]
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(m_full[key], m_micro[key], rtol=1e-5, err_msg=key)


def test_step_reports_health_metrics():
  trainer = _trainer()
  _, metrics = trainer.step(trainer.init_state(), _batch())
  for key in ("grad_norm", "param_norm", "update_norm", "toy/loss"):
    assert np.isfinite(float(metrics[key])), key
  assert float(metrics["grad_norm"]) > 0


def test_mesh_config_errors_name_the_field():
  with pytest.raises(ValueError, match="MeshConfig.model=3"):
    partitioning_lib.MeshConfig(model=3).resolve(8)
  with pytest.raises(ValueError, match="data=3"):
    partitioning_lib.MeshConfig(data=3, model=2).resolve(8)
  assert partitioning_lib.MeshConfig(model=2).resolve(8) == (4, 2)


def test_fsdp_rules_shard_embed_on_data():
  rules = dict(partitioning_lib.logical_axis_rules(fsdp=True))
  assert rules["embed"] == "data" and rules["mlp"] == "model"
  assert dict(partitioning_lib.activation_rules(tuple(rules.items())))["embed"] is None


def test_plain_gradient_transformation_is_not_offered_extra_args():
  """A user's optimizer written against optax's basic protocol (`update(updates, state,
  params)`) keeps working: only extra-args transformations are handed the grad norm."""
  sgd = optax.sgd(0.1)
  plain = optax.GradientTransformation(sgd.init, lambda u, s, p=None: sgd.update(u, s, p))
  mesh = partitioning_lib.make_mesh(partitioning_lib.MeshConfig())
  trainer = trainer_lib.PartitionedTrainer(
      ToyModel(), plain, mesh, partitioning_lib.logical_axis_rules(), seed=0,
      input_shapes={"x": (8, 4), "y": (8, 3)}, input_types={"x": jnp.float32, "y": jnp.float32})
  state = trainer.init_state()
  before = jax.device_get(state.params)["w"]
  state, metrics = trainer.step(state, _batch())
  assert int(state.skipped_steps) == 0 and float(metrics["update_norm"]) > 0
  assert not np.array_equal(jax.device_get(state.params)["w"], before)


class ScaledToyModel(ToyModel):
  """ToyModel whose loss is multiplied by a plain attribute (a config value the step bakes in)."""

  def __init__(self, scale):
    super().__init__()
    self.scale = scale

  def loss_fn(self, params, batch, dropout_rng, step=0):
    loss, metrics = super().loss_fn(params, batch, dropout_rng, step)
    return self.scale * loss, metrics


def test_trainers_with_equal_keys_share_compiled_programs():
  """Same cache_key and an equal model: the second trainer reuses the first one's compiled init
  and step (no tracing) and computes what an unshared trainer computes; a different model value,
  key or batch size, or a model changed after construction, gets its own program."""
  trainer_lib.clear_program_cache()
  batch = _batch()

  def run(trainer):
    compiled = trainer.compile(8)
    state, metrics = trainer.step(trainer.init_state(), batch)
    return compiled, float(metrics["loss"]), jax.device_get(state.params)["w"]

  first, loss1, w1 = run(_trainer(model=ScaledToyModel(2.0), cache_key="k"))
  second, loss2, w2 = run(_trainer(model=ScaledToyModel(2.0), cache_key="k"))
  assert second is first
  _, loss_unshared, w_unshared = run(_trainer(model=ScaledToyModel(2.0)))
  assert loss1 == loss2 == loss_unshared
  np.testing.assert_array_equal(w2, w_unshared)

  other_scale, loss3, _ = run(_trainer(model=ScaledToyModel(3.0), cache_key="k"))
  assert other_scale is not first
  np.testing.assert_allclose(loss3, 1.5 * loss1, rtol=1e-6)
  assert run(_trainer(model=ScaledToyModel(2.0), cache_key="other"))[0] is not first
  assert _trainer(model=ScaledToyModel(2.0), cache_key="k").compile(16) is not first
  changed = _trainer(model=ScaledToyModel(2.0), cache_key="k")
  changed.model.scale = 3.0  # After construction, before compiling.
  assert changed.compile(8) is other_scale


def test_models_without_a_value_repr_are_never_shared():
  class Opaque:
    pass
  model = ScaledToyModel(2.0)
  model.helper = Opaque()
  assert trainer_lib.fingerprint(model) is None
  trainer_lib.clear_program_cache()
  a = _trainer(model=model, cache_key="k").compile(8)
  assert _trainer(model=model, cache_key="k").compile(8) is not a
