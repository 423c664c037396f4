"""SlamModel end to end on the tiny encoder: metrics, determinism, gradients, memorisation."""

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from slam_jax import masking as masking_lib
from slam_jax import model as model_lib
from slam_jax import types
from slam_jax.data import synthetic
from slam_jax.losses import compose
from slam_jax.models import encoder as encoder_lib
from slam_jax.models import quantizer as quantizer_lib

FRAMES, LENGTH, VOCAB = 48, 16, 128


def _model(stage2_start_step=0, **encoder_overrides):
  return model_lib.SlamModel(
      encoder_lib.get_preset("tiny", **encoder_overrides),
      quantizer_lib.QuantizerConfig(num_groups=2, num_entries=8, code_dim=16),
      objectives=compose.ObjectiveConfig(num_distractors=10),
      loss_weights=compose.LossWeightSchedule(stage2_start_step=stage2_start_step))


def _batch(rows=6, seed=0):
  b = synthetic.synthetic_batch(np.random.default_rng(seed), rows, FRAMES, LENGTH, VOCAB)
  return {k: jnp.asarray(v) for k, v in b.items()}


def _init(model, batch, seed=0):
  shapes = {k: v.shape for k, v in batch.items()}
  init = jax.jit(lambda rng: nn.unbox(model.get_initial_variables(rng, shapes)["params"]))
  return init(jax.random.key(seed))


@pytest.fixture(scope="module")
def setup():
  model = _model()
  batch = _batch()
  params = _init(model, batch)

  @jax.jit
  def loss_and_grads(params, features, rng):
    def f(p, x):
      return model.pretraining_loss(p, {**batch, types.SPEECH_FEATURES: x}, rng, step=7)
    (loss, metrics), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, features)
    return loss, metrics, grads

  return model, batch, params, loss_and_grads


def test_metrics_are_finite_and_named(setup):
  model, batch, params, loss_and_grads = setup
  loss, metrics, _ = loss_and_grads(params, batch[types.SPEECH_FEATURES], jax.random.key(1))
  assert np.isfinite(float(loss))
  expected = {"loss", "codebook/perplexity", "codebook/code_perplexity", "gumbel_temperature",
              "examples/text", "examples/speech", "examples/paired", "tlm/text_accuracy",
              "tlm/speech_accuracy", "diversity/perplexity"}
  for term in compose.TERMS:
    expected |= {f"{term}/loss", f"{term}/weight"}
  for term in ("text_mlm", "contrastive", "speech_mlm", "stm"):
    expected |= {f"{term}/accuracy", f"{term}/count"}
  assert expected <= set(metrics)
  assert all(np.shape(v) == () and np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["examples/paired"]) == 2 and float(metrics["stm/count"]) == 2
  assert all(float(metrics[f"{t}/count"]) > 0 for t in ("text_mlm", "contrastive", "speech_mlm"))
  np.testing.assert_allclose(float(loss), sum(
      float(metrics[f"{t}/weight"]) * float(metrics[f"{t}/loss"]) for t in compose.TERMS),
                             rtol=1e-5)


def test_same_key_same_loss(setup):
  model, batch, params, loss_and_grads = setup
  a = loss_and_grads(params, batch[types.SPEECH_FEATURES], jax.random.key(4))[0]
  b = loss_and_grads(params, batch[types.SPEECH_FEATURES], jax.random.key(4))[0]
  c = loss_and_grads(params, batch[types.SPEECH_FEATURES], jax.random.key(5))[0]
  assert float(a) == float(b) and float(a) != float(c)


def test_gradients_finite_and_none_into_padding(setup):
  model, batch, params, loss_and_grads = setup
  _, _, (g_params, g_features) = loss_and_grads(params, batch[types.SPEECH_FEATURES],
                                                jax.random.key(1))
  leaves = jax.tree_util.tree_leaves(g_params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  g_features = np.asarray(g_features)
  padding = np.asarray(batch[types.SPEECH_MASK]) == 0
  assert np.all(g_features[padding] == 0.0)
  assert np.abs(g_features[~padding]).sum() > 0
  for name in ("quantizer", "contrastive_projection", "speech_mlm_head", "text_mlm_head",
               "stm_head"):
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(g_params[name])) > 0


def test_prepare_respects_kinds_and_padding(setup):
  model, batch, _, _ = setup
  batch = _batch(rows=9, seed=3)
  inputs, targets = jax.jit(model.prepare)(jax.random.key(2), batch)
  kind = np.asarray(batch[types.KIND])
  speech_mask = np.asarray(targets.speech_mask)
  valid = np.asarray(encoder_lib.SlamEncoder.subsampled_mask(model.encoder_config,
                                                             batch[types.SPEECH_MASK]))
  assert not np.any(speech_mask & ~valid) and not speech_mask[kind == types.KIND_TEXT].any()
  assert np.all(speech_mask[kind != types.KIND_TEXT].sum(1) >= 1)
  text_mask = np.asarray(targets.text_mask)
  assert not text_mask[kind == types.KIND_SPEECH].any()
  assert np.all(text_mask[kind != types.KIND_SPEECH].sum(1) >= 1)
  tokens = np.asarray(targets.text_targets)
  assert np.all(tokens[text_mask] > 1)  # never PAD or EOS
  changed = np.asarray(inputs[types.TEXT_TOKENS]) != tokens
  assert not np.any(changed & ~text_mask)
  # STM: one of the three paired rows borrows another paired row's transcript.
  labels = np.asarray(targets.stm_labels)
  assert labels[kind != types.KIND_PAIRED].min() == 1 and (labels == 0).sum() == 1
  row = int(np.flatnonzero(labels == 0)[0])
  assert any(np.array_equal(tokens[row], np.asarray(batch[types.TEXT_TOKENS])[other])
             for other in np.flatnonzero(kind == types.KIND_PAIRED) if other != row)


def test_eval_is_deterministic_and_encode_runs(setup):
  model, batch, params, _ = setup
  eval_fn = jax.jit(lambda p, b: model.pretraining_loss(p, b, None))
  loss_a, metrics = eval_fn(params, batch)
  loss_b, _ = eval_fn(params, batch)
  assert float(loss_a) == float(loss_b) and np.isfinite(float(loss_a))
  assert float(metrics["codebook/perplexity"]) >= 2.0  # at least G
  out = jax.jit(model.encode)(params, batch)
  assert out.shared_text.shape == (6, LENGTH, 32) and out.features.shape[:2] == (6, FRAMES // 4)


def test_interface_shapes_and_gin_factory():
  model = _model()
  shapes, dtypes = model.input_shapes_and_types(4, {"speech": FRAMES, "text": LENGTH})
  assert set(shapes) == set(types.MODEL_FEATURES)
  assert shapes[types.SPEECH_FEATURES] == (4, FRAMES, 80) and dtypes[types.KIND] == jnp.int32
  assert model.mask_token_id == VOCAB - 1
  with gin.unlock_config():
    gin.parse_config("""
        slam_jax.models.encoder.make_encoder_config.preset = 'tiny'
        slam_jax.model.make_model.mask_token_id = 3
    """)
  try:
    built = model_lib.make_model()
  finally:
    gin.clear_config()
  assert built.encoder_config == encoder_lib.get_preset("tiny") and built.mask_token_id == 3
  with pytest.raises(ValueError, match="mask_token_id"):
    model_lib.SlamModel(encoder_lib.get_preset("tiny"), mask_token_id=VOCAB)


@pytest.mark.slow
def test_memorises_a_fixed_batch():
  """A few hundred adam steps on one fixed batch push every objective well above chance.

  About 20-35 s on 2 shared CPU cores, nearly all of it compilation.
  """
  model = _model(dropout_rate=0.0)
  batch = _batch(rows=12, seed=1)  # 4 rows of each kind: 2 of the 4 paired rows are STM negatives
  params = _init(model, batch, seed=2)
  tx = optax.adam(3e-3)
  key = jax.random.key(0)  # fixed masks, roll and distractors: a fixed task to memorise

  @jax.jit
  def train(params):
    def body(carry, step):
      p, opt = carry
      grads, metrics = jax.grad(model.pretraining_loss, has_aux=True)(p, batch, key, step)
      updates, opt = tx.update(grads, opt, p)
      return (optax.apply_updates(p, updates), opt), metrics
    (params, _), metrics = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(300))
    return jax.tree_util.tree_map(lambda m: m[-1], metrics)

  metrics = {k: float(v) for k, v in train(params).items()}
  # Chance: 1/128 (text), 1/8 (code ids), 1/11 (contrastive, 10 distractors), 1/2 (STM). The code
  # ids are moving targets (the quantizer trains too), so they get a lower bar (~5x chance).
  bars = {"text_mlm/accuracy": 0.9, "tlm/text_accuracy": 0.9, "contrastive/accuracy": 0.9,
          "stm/accuracy": 0.9, "speech_mlm/accuracy": 0.6, "tlm/speech_accuracy": 0.6}
  for name, bar in bars.items():
    assert metrics[name] >= bar, (name, metrics[name], metrics)


def test_objective_gin_files_build_the_model():
  from slam_jax import configurables  # noqa: F401  (registers train.model and friends)
  try:
    gin.parse_config_files_and_bindings(["gin/models/tiny.gin", "gin/objectives/tiny.gin"], [])
    tiny = model_lib.make_model()
    gin.clear_config()
    gin.parse_config_files_and_bindings(["gin/models/600m.gin", "gin/objectives/slam.gin"], [])
    paper = model_lib.make_model()
  finally:
    gin.clear_config()
  assert tiny.quantizer_config.num_entries == 8 and tiny.loss_weights.stage2_start_step == 0
  assert paper.quantizer_config == quantizer_lib.QuantizerConfig(
      num_groups=2, num_entries=320, code_dim=768, temperature_end=0.1)
  assert paper.masking_config.speech == masking_lib.SpeechMaskConfig(0.065, 10)
  assert paper.masking_config.text == masking_lib.TextMaskConfig()
  assert paper.masking_config.paired_text.mask_rate == 0.5
  assert paper.objectives == compose.ObjectiveConfig(0.1, 100, False)
  assert float(paper.loss_weights.weights(499_999)["tlm"]) == 0.0
  assert float(paper.loss_weights.weights(500_000)["stm"]) == 1.0
  assert paper.encoder_config.model_dim == 1024


def test_feature_converter_class_resolves_lazily():
  from slam_jax.data import converters  # imports seqio / TensorFlow
  assert model_lib.SlamModel.FEATURE_CONVERTER_CLS is converters.SlamFeatureConverter
  assert _model().FEATURE_CONVERTER_CLS is converters.SlamFeatureConverter
