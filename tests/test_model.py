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
from slam_jax.models import pretrainer as pretrainer_lib
from slam_jax.models import quantizer as quantizer_lib

FRAMES, LENGTH, VOCAB = 48, 16, 128
# One worker runs this file: its module fixtures (`setup`, `staged`) compile once.
pytestmark = pytest.mark.xdist_group("test_model")


def _model(stage2_start_step=0, objectives=None, temperature_decay=0.999995, masking=None,
           **encoder_overrides):
  # Two codebooks here (w2v-BERT's presets have one): the group axis of every term is exercised.
  return model_lib.SlamModel(
      encoder_lib.get_preset("tiny", **encoder_overrides),
      quantizer_lib.QuantizerConfig(num_groups=2, num_entries=8, code_dim=16,
                                    temperature_decay=temperature_decay),
      objectives=objectives or compose.ObjectiveConfig(num_distractors=10),
      loss_weights=compose.LossWeightSchedule(stage2_start_step=stage2_start_step),
      masking_config=masking or model_lib.MaskingConfig())


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
              "codebook/sampled_is_argmax",
              "examples/text", "examples/speech", "examples/paired", "tlm/text_accuracy",
              "tlm/speech_accuracy", "diversity/perplexity", "rows/text", "rows/speech",
              "rows/paired", "rows/idle"}
  for term in compose.TERMS:
    expected |= {f"{term}/loss", f"{term}/weight"}
  for term in ("text_mlm", "contrastive", "speech_mlm", "stm"):
    expected |= {f"{term}/accuracy", f"{term}/count"}
  assert expected <= set(metrics)
  assert all(np.shape(v) == () and np.isfinite(float(v)) for v in metrics.values())
  assert float(metrics["examples/paired"]) == 2 and float(metrics["stm/count"]) == 2
  assert float(metrics["rows/idle"]) == 0.0
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
  inputs, stm_text, targets = jax.jit(model.prepare)(jax.random.key(2), batch)
  kind = np.asarray(batch[types.KIND])
  speech_mask = np.asarray(targets.speech_mask)
  valid = np.asarray(encoder_lib.SlamEncoder.subsampled_mask(model.encoder_config,
                                                             batch[types.SPEECH_MASK]))
  assert not np.any(speech_mask & ~valid) and not speech_mask[kind == types.KIND_TEXT].any()
  assert np.all(speech_mask[kind != types.KIND_TEXT].sum(1) >= 2)  # wav2vec 2.0: >= 2 spans
  text_mask = np.asarray(targets.text_mask)
  assert not text_mask[kind == types.KIND_SPEECH].any()
  assert np.all(text_mask[kind != types.KIND_SPEECH].sum(1) >= 1)
  own = np.asarray(batch[types.TEXT_TOKENS])
  np.testing.assert_array_equal(targets.text_targets, own)  # unmasked STM: TLM on own text
  assert np.all(own[text_mask] > 1)  # never PAD or EOS
  changed = np.asarray(inputs[types.TEXT_TOKENS]) != own
  assert not np.any(changed & ~text_mask)
  # STM: one of the three paired rows gets another paired row's (unmasked) transcript.
  labels = np.asarray(targets.stm_labels)
  assert labels[kind != types.KIND_PAIRED].min() == 1 and (labels == 0).sum() == 1
  row = int(np.flatnonzero(labels == 0)[0])
  stm_tokens = np.asarray(stm_text[types.TEXT_TOKENS])
  assert not np.array_equal(stm_tokens[row], own[row])
  assert any(np.array_equal(stm_tokens[row], own[other])
             for other in np.flatnonzero(kind == types.KIND_PAIRED) if other != row)
  matched = labels == 1
  np.testing.assert_array_equal(stm_tokens[matched], own[matched])
  np.testing.assert_array_equal(targets.tlm_rows, kind == types.KIND_PAIRED)
  np.testing.assert_array_equal(targets.stm_rows, kind == types.KIND_PAIRED)


# ------------------------------------------------------------------ each term against numpy


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  z = x - x.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _ce(logits, targets):
  """Cross-entropy per position: logits [..., V], targets int [...]."""
  return -np.take_along_axis(_log_softmax(logits), np.asarray(targets)[..., None], -1)[..., 0]


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _reference(kind, tokens, valid, speech_mask, text_mask, labels, distractors, out, stm_logits,
               *, text_rows, speech_rows, tlm_rows, stm_rows, num_codes):
  """Every SLAM term from the model's outputs, on the rows/frames it is meant to see (numpy)."""
  mean = lambda x: x.mean() if x.size else 0.0  # a term without positions is 0
  ref = {}
  sel = text_mask & text_rows[:, None]
  ref["text_mlm"] = mean(_ce(out.text_logits, tokens)[sel])
  frames = speech_mask & valid & speech_rows[:, None]
  codes = np.asarray(out.quantizer.quantized_ids)  # the sampled codes (fairseq2's target)
  ref["speech_mlm"] = mean(_ce(out.speech_logits, codes)[frames])  # over frames and groups
  c, q = _unit(out.context), _unit(out.quantizer.quantized)
  idx, ok = np.asarray(distractors.indices), np.asarray(distractors.valid)
  per_frame = []
  for b, t in zip(*np.nonzero(frames)):
    if not ok[b, t].any():
      continue
    neg = [c[b, t] @ q[b, s] / 0.1 for s, v in zip(idx[b, t], ok[b, t])
           if v and not np.array_equal(codes[b, s], codes[b, t])]
    logits = np.array([c[b, t] @ q[b, t] / 0.1] + neg)
    per_frame.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0])
  ref["contrastive"] = np.mean(per_frame)
  probs = np.asarray(out.quantizer.probs, np.float64)[valid & speech_rows[:, None]].mean(0)
  ppl = np.exp(-(probs * np.log(np.maximum(probs, 1e-9))).sum(-1)).sum()
  ref["diversity"] = (num_codes - ppl) / num_codes
  tsel = text_mask & tlm_rows[:, None]
  ssel = speech_mask & valid & tlm_rows[:, None]
  ref["tlm"] = mean(_ce(out.text_logits, tokens)[tsel]) + mean(_ce(out.speech_logits, codes)[ssel])
  x = np.asarray(stm_logits, np.float64)[stm_rows]
  y = labels[stm_rows]
  ref["stm"] = mean(y * np.log1p(np.exp(-x)) + (1 - y) * np.log1p(np.exp(x)))
  return ref


_RUNS = {}


def _terms_and_reference(model, batch, key, step):
  """loss_fn's metrics and what its terms were computed from; one compilation per model."""
  if id(model) not in _RUNS:
    _RUNS[id(model)] = (model, _init(model, batch, seed=5), jax.jit(model.loss_and_outputs))
  _, params, run = _RUNS[id(model)]
  _, metrics, extra = jax.device_get(run(params, batch, key, step))
  inputs, stm_text, targets, _ = model._unpack(extra["prepared"])  # pylint: disable=protected-access
  return metrics, inputs, stm_text, targets, extra["outputs"], extra["stm_logits"]


def _check_terms(model, batch, key, step, rows):
  metrics, inputs, stm_text, targets, out, stm_logits = _terms_and_reference(model, batch, key,
                                                                            step)
  assert float(metrics["gumbel_temperature"]) > 1.0 or key is None
  kind = np.asarray(batch[types.KIND])
  tokens = np.asarray(batch[types.TEXT_TOKENS])
  labels = np.asarray(targets.stm_labels)
  ref = _reference(kind, tokens, np.asarray(out.encoder.speech_valid),
                   np.asarray(targets.speech_mask), np.asarray(targets.text_mask), labels,
                   targets.distractors, out, stm_logits, num_codes=model.quantizer_config.num_codes,
                   **rows(kind, labels))
  for term, value in ref.items():
    np.testing.assert_allclose(float(metrics[f"{term}/loss"]), value, rtol=2e-4, atol=1e-6,
                               err_msg=term)
  return metrics, inputs, stm_text, targets, out


P = types.KIND_PAIRED


@pytest.fixture(scope="module")
def staged():
  """A model in stage 1 before step 100 (one compilation serves both stages: the step is traced)."""
  return _model(stage2_start_step=100, dropout_rate=0.0)


def test_each_term_equals_its_numpy_reference_on_its_own_rows(staged):
  """Stage 2, STM on an unmasked pass: TLM scores every paired row with its own transcript."""
  model = staged
  batch = _batch(rows=9, seed=4)
  rows = lambda kind, labels: dict(
      text_rows=kind == types.KIND_TEXT, speech_rows=kind == types.KIND_SPEECH,
      tlm_rows=kind == P, stm_rows=kind == P)
  metrics, _, stm_text, targets, out = _check_terms(model, batch, jax.random.key(3), 107, rows)
  # The sampled code differs from the noise-free argmax somewhere at temperature ~2; the metric
  # is the share of the speech rows' real frames where they agree.
  same = np.all(np.asarray(out.quantizer.quantized_ids) == np.asarray(out.quantizer.ids), -1)
  assert not np.all(same)
  frames = np.asarray(out.encoder.speech_valid) & np.asarray(targets.speech_rows)[:, None]
  np.testing.assert_allclose(float(metrics["codebook/sampled_is_argmax"]),
                             same[frames].mean(), rtol=1e-6)
  # The STM pass sees clean transcripts: no mask id anywhere.
  assert not np.any(np.asarray(stm_text[types.TEXT_TOKENS]) == model.mask_token_id)
  assert float(metrics["stm/count"]) == 3 and float(metrics["rows/idle"]) == 0.0


def test_masked_stm_variant_keeps_negatives_out_of_tlm():
  model = _model(dropout_rate=0.0, objectives=compose.ObjectiveConfig(
      num_distractors=10, stm_pass="masked", mlm_target="argmax"))
  batch = _batch(rows=9, seed=4)
  rows = lambda kind, labels: dict(
      text_rows=kind == types.KIND_TEXT, speech_rows=kind == types.KIND_SPEECH,
      tlm_rows=(kind == P) & (labels == 1), stm_rows=kind == P)
  # mlm_target='argmax': the reference's targets are the argmax ids (eval: sampled == argmax).
  _, inputs, _, targets, _ = _check_terms(model, batch, None, 7, rows)
  labels = np.asarray(targets.stm_labels)
  assert (labels == 0).sum() == 1
  negative = int(np.flatnonzero(labels == 0)[0])
  own = np.asarray(batch[types.TEXT_TOKENS])
  assert not np.array_equal(np.asarray(targets.text_targets)[negative], own[negative])


def test_stage_one_trains_paired_rows_as_speech_plus_text_rows(staged):
  model = staged
  batch = _batch(rows=9, seed=4)
  rows = lambda kind, labels: dict(
      text_rows=kind != types.KIND_SPEECH, speech_rows=kind != types.KIND_TEXT,
      tlm_rows=np.zeros_like(kind, bool), stm_rows=np.zeros_like(kind, bool))
  metrics, inputs, _, targets, _ = _check_terms(model, batch, jax.random.key(3), 7, rows)
  kind = np.asarray(batch[types.KIND])
  for term in ("text_mlm", "contrastive", "speech_mlm"):
    assert float(metrics[f"{term}/count"]) > 0
  assert float(metrics["tlm/loss"]) == 0.0 and float(metrics["stm/loss"]) == 0.0
  assert float(metrics["rows/idle"]) == 0.0 and float(metrics["rows/paired"]) == pytest.approx(1 / 3)
  # A paired row's transcript sits in a segment of its own: speech and text do not attend.
  seg = np.asarray(inputs[types.TEXT_SEGMENT_IDS])
  own = np.asarray(batch[types.TEXT_SEGMENT_IDS])
  np.testing.assert_array_equal(seg[kind == P], np.where(own[kind == P] > 0, own[kind == P] + 1, 0))
  np.testing.assert_array_equal(seg[kind != P], own[kind != P])
  # SpanBERT's 15% on the transcripts, not TLM's 50%.
  text_mask = np.asarray(targets.text_mask)
  real = (own > 0) & (np.asarray(batch[types.TEXT_TOKENS]) > 1)
  np.testing.assert_array_equal(text_mask.sum(1)[kind == P],
                                np.maximum(np.round(0.15 * real.sum(1)), 1)[kind == P])
  # Without the split (the old behaviour) the paired rows idle in stage 1.
  idle = _model(stage2_start_step=100, objectives=compose.ObjectiveConfig(
      num_distractors=10, split_idle_pairs=False))
  _, _, idle_targets = jax.jit(idle.prepare)(jax.random.key(3), batch, 7)
  bearing = np.asarray(compose.bearing_rows(idle_targets, idle.loss_weights.weights(7)))
  np.testing.assert_array_equal(bearing, kind != P)


def test_microbatches_add_up_to_the_full_batch_loss(staged):
  """A prepared batch cut into 3 microbatches, kinds unevenly spread (the first is all text):
  the microbatch losses' mean is the full-batch loss, term by term (Gumbel noise included)."""
  model = staged
  batch = _batch(rows=9, seed=6)
  order = np.argsort(np.asarray(batch[types.KIND]), kind="stable")  # T T T S S S P P P
  order = order[[0, 1, 2, 3, 6, 7, 4, 8, 5]]  # [T T T] [S P P] [S P S]
  batch = {k: v[order] for k, v in batch.items()}
  key, step = jax.random.key(11), 107
  full, _, _, _, _, _ = _terms_and_reference(model, batch, key, step)
  _, params, _ = _RUNS[id(model)]
  prepared = jax.jit(model.prepare_batch)(batch, key, step)
  micro_fn = jax.jit(model.pretraining_loss)
  micro = [jax.device_get(micro_fn(params, {k: v[i * 3:(i + 1) * 3] for k, v in prepared.items()},
                                   jax.random.fold_in(key, i), step)) for i in range(3)]
  micro_loss = np.mean([m[0] for m in micro])
  micro = {k: np.mean([m[1][k] for m in micro]) for k in micro[0][1]}
  for term in ("text_mlm", "contrastive", "speech_mlm", "tlm", "stm"):
    np.testing.assert_allclose(micro[f"{term}/loss"], full[f"{term}/loss"], rtol=1e-5,
                               err_msg=term)
  for name in ("text_mlm/accuracy", "contrastive/accuracy", "tlm/text_accuracy",
               "stm/accuracy", "examples/text", "examples/paired", "stm/count",
               "text_mlm/count", "rows/paired"):
    np.testing.assert_allclose(micro[name], full[name], rtol=1e-5, err_msg=name)
  # Diversity is a function of the batch's mean code distribution: each microbatch scores its own,
  # weighted by its share of the frames (as fairseq with gradient accumulation).
  div = lambda m: m["diversity/weight"] * m["diversity/loss"]
  np.testing.assert_allclose(micro_loss - div(micro), full["loss"] - div(full), rtol=1e-5)


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
  assert model.random_token_ids == (3, VOCAB - 1)  # real pieces after PAD/EOS/UNK
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
  """150 adam steps on one fixed batch push every objective well above chance.

  About 13 CPU-s: ~9 compiling, ~4.5 running (at 150 steps every bar already holds with margin:
  text, TLM text, contrastive and STM accuracy 1.0, code ids 1.0 / TLM speech 0.9; at 100 the
  contrastive accuracy was 0.94 and the code ids 0.81).
  """
  # Speech spans sized for these 12-frame rows. w2v-BERT's (M = 10, at least 2 spans per row) mask
  # whole rows here (a row of 9 frames was 100% masked, one of 12 had 11), and the frames of an
  # all-mask input differ only by position: contrastive accuracy then stopped at 21-22 of 27
  # frames, with argmax or Gumbel-sampled targets alike. With rows that keep unmasked context,
  # the fairseq2 default (sampled targets) memorises every term.
  spans = masking_lib.SpeechMaskConfig(start_prob=0.2, span_length=3, min_spans=1)
  model = _model(dropout_rate=0.0, objectives=compose.ObjectiveConfig(num_distractors=10),
                 masking=model_lib.MaskingConfig(speech=spans, paired_speech=spans))
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
    (params, _), metrics = jax.lax.scan(body, (params, tx.init(params)), jnp.arange(150))
    return jax.tree_util.tree_map(lambda m: m[-1], metrics)

  metrics = {k: float(v) for k, v in train(params).items()}
  # Chance: 1/128 (text), 1/8 (code ids), 1/11 (contrastive, 10 distractors), 1/2 (STM). The code
  # ids are moving targets (the quantizer trains too), so they get a lower bar (~5x chance).
  bars = {"text_mlm/accuracy": 0.9, "tlm/text_accuracy": 0.9, "contrastive/accuracy": 0.9,
          "stm/accuracy": 0.9, "speech_mlm/accuracy": 0.6, "tlm/speech_accuracy": 0.6}
  assert metrics["contrastive/count"] >= 12, metrics  # enough masked frames to mean something
  for name, bar in bars.items():
    assert metrics[name] >= bar, (name, metrics[name], metrics)


def test_objective_gin_files_build_the_model():
  from slam_jax import configurables  # noqa: F401  (registers the model configurables)
  try:
    gin.parse_config_files_and_bindings(["gin/models/tiny.gin", "gin/objectives/tiny.gin"], [])
    tiny = model_lib.make_model()
    gin.clear_config()
    gin.parse_config_files_and_bindings(["gin/models/600m.gin", "gin/objectives/slam.gin"], [])
    paper = model_lib.make_model()
  finally:
    gin.clear_config()
  assert tiny.quantizer_config.num_entries == 16 and tiny.loss_weights.stage2_start_step == 0
  # w2v-BERT's codebook (fairseq2's 600m config): one codebook of 1024 entries, quantized dim 1024.
  assert paper.quantizer_config == quantizer_lib.QuantizerConfig(
      num_groups=1, num_entries=1024, code_dim=1024, temperature_start=2.0, temperature_end=0.1,
      temperature_decay=0.999995)
  assert paper.masking_config.speech == masking_lib.SpeechMaskConfig(0.065, 10, min_spans=2)
  assert paper.masking_config.text == masking_lib.TextMaskConfig()
  assert paper.masking_config.paired_text.mask_rate == 0.5
  assert paper.objectives == compose.ObjectiveConfig(
      0.1, 100, False, mlm_target="sampled", stm_pass="unmasked", stm_negatives="random",
      split_idle_pairs=True)
  assert float(paper.loss_weights.weights(499_999)["tlm"]) == 0.0
  assert float(paper.loss_weights.weights(500_000)["stm"]) == 1.0
  enc = paper.encoder_config
  assert (enc.model_dim, enc.num_heads, enc.ffn_dim) == (1024, 8, 4096)
  assert (enc.num_speech_layers, enc.num_shared_layers, enc.conv_kernel_size) == (8, 16, 5)


def test_feature_converter_class_resolves_lazily():
  from slam_jax.data import converters  # imports seqio / TensorFlow
  assert model_lib.SlamModel.FEATURE_CONVERTER_CLS is converters.SlamFeatureConverter
  assert _model().FEATURE_CONVERTER_CLS is converters.SlamFeatureConverter
