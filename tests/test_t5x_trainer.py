"""SlamModel under t5x's trainer: same first step as slam_jax.trainer, the step reaches the loss,
microbatches average, the t5x BaseModel interface, and `python -m t5x.train` end to end."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from t5x import metrics as t5x_metrics_lib
from t5x import models as t5x_models
from t5x import partitioning as t5x_partitioning
from t5x import trainer as t5x_trainer_lib
from t5x import utils as t5x_utils

from slam_jax import optim as optim_lib
from slam_jax import partitioning as partitioning_lib
from slam_jax import t5x_trainer
from slam_jax import types

import tiny_slam  # tests/tiny_slam.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, SEED = tiny_slam.ROWS, tiny_slam.SEED
OPTIMIZER = tiny_slam.optimizer_config()
# One worker runs these tests and the sharding test: the `t5x_two_steps` module fixture and the
# `tiny_slam_one_device` session fixture (our trainer's reference run) are computed once.
GROUP = pytest.mark.xdist_group("tiny_slam")


def _model():
  """tests/tiny_slam.py's model (stage 2 from step 1, Gumbel temperature 2.0 then 1.0: one step
  shows both switches) with t5x's optimizer_def."""
  return tiny_slam.model(t5x_trainer.make_optimizer(OPTIMIZER, total_steps=tiny_slam.TOTAL_STEPS))


def _batch():
  return {k: jnp.asarray(v) for k, v in tiny_slam.batch().items()}


class _GradientNorm(t5x_trainer_lib.WeightMetricsComputer):
  """t5x's weight metrics cut to the global norm of t5x's gradients (what the tests compare);
  the per-parameter RMS and max metrics add ~400 reductions to every compiled step."""

  def compute_metrics(self, gradients, old_train_state, new_train_state):
    del old_train_state, new_train_state
    return {"weight_gradient_norm": t5x_metrics_lib.AveragePerStep.from_model_output(
        optim_lib.global_norm(gradients))}


def _t5x_trainer(model, batch, num_microbatches=None, num_partitions=1):
  shapes = {k: v.shape for k, v in batch.items()}
  dtypes = {k: v.dtype for k, v in batch.items()}
  partitioner = t5x_partitioning.PjitPartitioner(
      num_partitions=num_partitions, logical_axis_rules=partitioning_lib.t5x_logical_axis_rules())
  init = t5x_utils.TrainStateInitializer(model.optimizer_def, model.get_initial_variables, shapes,
                                         partitioner, dtypes)
  state = init.from_scratch(jax.random.PRNGKey(SEED))
  return _slam_trainer(model, state, partitioner, init.train_state_axes, num_microbatches), state


def _slam_trainer(model, state, partitioner, train_state_axes, num_microbatches=None):
  return t5x_trainer.SlamTrainer(
      model=model, train_state=state, partitioner=partitioner, eval_names=[], summary_dir=None,
      train_state_axes=train_state_axes, rng=jax.random.PRNGKey(SEED),
      learning_rate_fn=t5x_trainer.learning_rate(OPTIMIZER, tiny_slam.TOTAL_STEPS),
      num_microbatches=num_microbatches, weight_metrics_computer=_GradientNorm())


def _values(metrics):
  return {k: float(np.asarray(v.compute())) for k, v in metrics.items()}


@pytest.fixture(scope="module")
def t5x_two_steps():
  """Two SlamTrainer steps (stage 2 from step 1): model, batch, params before and after step 0
  (numpy copies: the step donates the state), metrics of steps 0 and 1."""
  model, batch = _model(), _batch()
  trainer, state = _t5x_trainer(model, batch)
  params0 = jax.tree_util.tree_map(np.asarray, state.params)
  state, metrics0 = trainer._partitioned_train_step(state, batch)  # pylint: disable=protected-access
  params1 = jax.tree_util.tree_map(np.asarray, state.params)
  _, metrics1 = trainer._partitioned_train_step(state, batch)  # pylint: disable=protected-access
  return model, batch, params0, params1, _values(metrics0), _values(metrics1)


@GROUP
def test_first_step_equals_slam_jax_trainer(t5x_two_steps, tiny_slam_one_device):
  """Same init, first-step loss, gradient norm, terms and parameters as our trainer's reference
  run (conftest's tiny_slam_one_device)."""
  _, _, t5x_params0, t5x_params1, t5x_metrics, _ = t5x_two_steps
  ours = tiny_slam_one_device
  for a, b in zip(jax.tree_util.tree_leaves(ours["params"][0]),
                  jax.tree_util.tree_leaves(t5x_params0)):
    np.testing.assert_array_equal(a, b)  # same init from the same key
  metrics = ours["metrics"][0]
  np.testing.assert_allclose(t5x_metrics["loss"], metrics["loss"], rtol=1e-6)
  np.testing.assert_allclose(t5x_metrics["weight_gradient_norm"], metrics["grad_norm"],
                             rtol=1e-5)
  for name in ("text_mlm/loss", "contrastive/loss", "tlm/weight", "gumbel_temperature"):
    np.testing.assert_allclose(t5x_metrics[name], metrics[name], rtol=1e-6, err_msg=name)
  for a, b in zip(jax.tree_util.tree_leaves(ours["params"][1]),
                  jax.tree_util.tree_leaves(t5x_params1)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # The second step (stage 2: TLM and STM on) agrees too.
  np.testing.assert_allclose(t5x_two_steps[-1]["loss"], ours["metrics"][1]["loss"], rtol=1e-5)


def test_restored_float32_counters_get_their_integer_dtypes_back():
  """t5x's checkpointer saves the unpartitioned step and AdamW count cast to float32; a
  SlamTrainer built on such a restored state holds them as int32 again (same values), so a
  restart runs the same compiled step as the first run."""
  model, batch = _model(), _batch()
  trainer, state = _t5x_trainer(model, batch)
  as_restored = jax.tree_util.tree_map(
      lambda x: (x + 5).astype(jnp.float32) if x.dtype == jnp.int32 else x, state)
  opt = as_restored._optimizer.state  # pylint: disable=protected-access
  assert opt.step.dtype == jnp.float32 and opt.param_states.count.dtype == jnp.float32
  restarted = _slam_trainer(model, as_restored, trainer._partitioner,  # pylint: disable=protected-access
                            trainer._train_state_axes)  # pylint: disable=protected-access
  opt = restarted.train_state._optimizer.state  # pylint: disable=protected-access
  assert opt.step.dtype == jnp.int32 and int(opt.step) == 5
  assert opt.param_states.count.dtype == jnp.int32 and int(opt.param_states.count) == 5
  for a, b in zip(jax.tree_util.tree_leaves(restarted.train_state.params),
                  jax.tree_util.tree_leaves(state.params)):
    assert a.dtype == b.dtype


@GROUP
def test_stages_switch_and_gumbel_anneals_under_t5x(t5x_two_steps):
  """stage2_start_step=1: TLM/STM weights 0 at step 0 and 1 at step 1; temperature 2 -> 1."""
  *_, step0, step1 = t5x_two_steps
  assert step0["tlm/weight"] == 0.0 and step0["stm/weight"] == 0.0
  assert step1["tlm/weight"] == 1.0 and step1["stm/weight"] == 1.0
  assert step0["text_mlm/weight"] == step1["text_mlm/weight"] == 1.0
  np.testing.assert_allclose([step0["gumbel_temperature"], step1["gumbel_temperature"]],
                             [2.0, 1.0], rtol=1e-6)


@GROUP
def test_microbatch_gradient_is_the_mean_of_microbatch_gradients(t5x_two_steps):
  """t5x sums its microbatches' gradients; SlamTrainer's 1/n loss scale makes that the mean, as
  slam_jax.trainer computes it (t5x gives every microbatch the key split(rng)[1])."""
  model, batch, params, *_ = t5x_two_steps
  assert t5x_trainer.SlamTrainer._loss_scale(type("T", (), {"_num_microbatches": 2})()) == 0.5  # pylint: disable=protected-access
  rng = jax.random.PRNGKey(5)
  state = type("State", (), {"params": params, "flax_mutables": None})()
  got = jax.jit(lambda b, r: t5x_trainer_lib.accumulate_grads_microbatched(
      model.at_step(0, 0.5), state, b, r, 2)[0])(batch, rng)
  grad = jax.jit(jax.grad(lambda p, b, r: model.pretraining_loss(p, b, r)[0]))
  sub = jax.random.split(rng)[1]
  half = ROWS // 2
  want = jax.tree_util.tree_map(lambda a, b: (a + b) / 2,
                                grad(params, {k: v[:half] for k, v in batch.items()}, sub),
                                grad(params, {k: v[half:] for k, v in batch.items()}, sub))
  np.testing.assert_allclose(float(optax.global_norm(got)), float(optax.global_norm(want)),
                             rtol=1e-5)


@GROUP
def test_base_model_interface(t5x_two_steps):
  model, batch, params, *_ = t5x_two_steps
  assert isinstance(model, t5x_models.BaseModel)
  # Shapes suffice for the structure checks (the SLAM model's eager init costs ~4 CPU-s).
  variables = jax.eval_shape(lambda rng: model.get_initial_variables(
      rng, {k: v.shape for k, v in batch.items()}), jax.random.PRNGKey(0))
  axes = jax.tree_util.tree_leaves(
      variables["params_axes"], is_leaf=lambda x: hasattr(x, "names"))
  assert len(axes) == len(jax.tree_util.tree_leaves(variables["params"]))
  boxed = partitioning_lib.boxed_params(variables)
  assert jax.tree_util.tree_structure(partitioning_lib.unbox(boxed)) == (
      jax.tree_util.tree_structure(variables["params"]))
  scores = jax.jit(model.score_batch)(params, batch)
  assert scores.shape == (ROWS,)
  alone_loss = jax.jit(lambda b: model.pretraining_loss(params, b, None)[0])
  for row in (0, ROWS - 1):  # each row scored alone
    alone = {k: v[row:row + 1] for k, v in batch.items()}
    np.testing.assert_allclose(float(scores[row]), float(alone_loss(alone)), rtol=1e-5)
  preds, aux = jax.jit(model.predict_batch_with_aux)(params, batch)
  tokens = np.asarray(batch[types.TEXT_TOKENS])
  mask = np.asarray(aux["text_mask"])
  assert preds.shape == tokens.shape and mask.any()
  np.testing.assert_array_equal(np.asarray(preds)[~mask], tokens[~mask])
  assert aux["predicted_speech_ids"].shape == aux["speech_ids"].shape
  assert aux["stm_probability"].shape == (ROWS,)


def _env(extra=None):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  env.update(extra or {})
  return env


def test_t5x_train_writes_and_restores_a_checkpoint(tiny_corpus, tmp_path):
  """`python -m t5x.train` on the tiny demo corpus: 1 step + checkpoint, then a restart restores
  it and trains step 2 (the restart logs 'Restoring checkpoint' and writes checkpoint_2)."""
  cmd = [sys.executable, "-m", "t5x.train", "--gin_file=gin/t5x/test_tiny.gin",
         f"--gin.MODEL_DIR='{tmp_path}'", "--alsologtostderr"]
  env = _env({"SLAM_DATA_DIR": tiny_corpus})
  first = subprocess.run(cmd + ["--gin.TRAIN_STEPS=1"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
  assert first.returncode == 0, first.stderr[-3000:]
  assert os.path.isdir(tmp_path / "checkpoint_1")
  second = subprocess.run(cmd + ["--gin.TRAIN_STEPS=2"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f"Restoring checkpoint from {tmp_path}/checkpoint_1" in second.stderr
  assert "steps 1-2" in second.stderr
  assert os.path.isdir(tmp_path / "checkpoint_2")
  _t5x_eval_and_infer_agree(tiny_corpus, tmp_path, env)


def _t5x_eval_and_infer_agree(tiny_corpus, run_dir, env):
  """`python -m t5x.eval` and `python -m t5x.infer` (score mode) on that checkpoint: eval reports
  each task's mean pre-training loss (per kind), infer one score per validation example, in the
  split's order, whose mean is eval's loss."""
  import json  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  from tasks import demo  # pylint: disable=g-import-not-at-top
  ckpt = f"--gin.CHECKPOINT_PATH='{run_dir}/checkpoint_2'"
  experiment = "--gin_file=gin/experiments/test_tiny_demo.gin"
  for script, run_layer, out in (("t5x.eval", "eval.gin", "EVAL_OUTPUT_DIR"),
                                 ("t5x.infer", "infer_score.gin", "INFER_OUTPUT_DIR")):
    proc = subprocess.run(
        [sys.executable, "-m", script, f"--gin_file=gin/t5x/{run_layer}", experiment, ckpt,
         f"--gin.{out}='{run_dir}/{script}'"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
  demo.register_demo_tasks(tiny_corpus)
  lengths = {"speech": 64, "text": 16}  # gin/experiments/test_tiny_demo.gin
  for name, kind in (("slam_demo_text", "text"), ("slam_demo_speech", "speech"),
                     ("slam_demo_paired", "paired")):
    with open(run_dir / "t5x.eval" / "inference_eval" / f"{name}-metrics.jsonl") as f:
      metrics = json.loads(f.read().splitlines()[-1])
    assert metrics["step"] == 2 and set(metrics) == {"step", "loss", f"loss/{kind}"}, metrics
    assert 0 < metrics["loss"] < 20 and metrics["loss"] == metrics[f"loss/{kind}"]
    with open(run_dir / "t5x.infer" / f"{name}-score.jsonl-00000-of-00001") as f:
      rows = [json.loads(line) for line in f]
    split = seqio.get_mixture_or_task(name).get_dataset(lengths, split="validation",
                                                        shuffle=False, num_epochs=1)
    assert [r["inputs"]["id"] for r in rows] == [x["id"].decode() for x in split.as_numpy_iterator()]
    np.testing.assert_allclose(np.mean([r["score"] for r in rows]), metrics["loss"], rtol=1e-5)


_TWO_DEVICE_SCRIPT = textwrap.dedent("""
    import jax
    import tests.test_t5x_trainer as t
    assert jax.device_count() == 2, jax.devices()
    model, batch = t._model(), t._batch()
    trainer, state = t._t5x_trainer(model, batch, num_partitions=2)
    assert trainer._partitioner._num_partitions == 2
    mlp = [x for x in jax.tree_util.tree_leaves(state.params) if "model" in str(x.sharding.spec)]
    assert mlp, "no parameter is split over the 'model' axis"
    _, metrics = trainer._partitioned_train_step(state, batch)
    print("LOSS", float(metrics["loss"].compute()),
          float(metrics["weight_gradient_norm"].compute()))
""")


@GROUP
def test_two_device_mesh_with_model_partitions(t5x_two_steps):
  """num_partitions=2 on 2 simulated CPU devices: params split over 'model'; the first step's loss
  and gradient norm are the single-device step's (this process's t5x_two_steps)."""
  result = subprocess.run(
      [sys.executable, "-c", _TWO_DEVICE_SCRIPT], cwd=ROOT, capture_output=True, text=True,
      timeout=900,
      env=_env({"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                              + " --xla_force_host_platform_device_count=2").strip(),
                "JAX_PLATFORMS": "cpu",
                "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")])}))
  assert result.returncode == 0, result.stderr[-3000:]
  loss, grad_norm = map(float, result.stdout.split("LOSS")[1].split())
  *_, one_device, _ = t5x_two_steps
  np.testing.assert_allclose(loss, one_device["loss"], rtol=1e-5)
  np.testing.assert_allclose(grad_norm, one_device["weight_gradient_norm"], rtol=1e-5)


T5X_GIN_FILES = ["slam_demo_tiny", "slam_stage1", "slam_stage2", "test_tiny"]


def test_t5x_gin_files_parse():
  """Each gin/t5x file parses as `python -m t5x.train` would (t5x.train as __main__); one
  subprocess parses them all in turn (importing t5x costs more than parsing)."""
  script = textwrap.dedent("""
      import os, sys, gin
      import t5x, t5x.train
      sys.modules["__main__"] = t5x.train
      from t5x import gin_utils
      t5x_dir = os.path.dirname(os.path.dirname(t5x.__file__))
      for name in sys.argv[1:]:
        gin.clear_config()
        gin_utils.parse_gin_flags([".", t5x_dir], [f"gin/t5x/{name}.gin"], ["MODEL_DIR = '/tmp/x'"])
        print("PARSED", name, "SlamTrainer" in gin.config_str())
  """)
  result = subprocess.run([sys.executable, "-c", script, *T5X_GIN_FILES], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert [line for line in result.stdout.splitlines() if line.startswith("PARSED")] == [
      f"PARSED {name} True" for name in T5X_GIN_FILES]
