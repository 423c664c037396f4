"""SlamModel: a t5x BaseModel tying the encoder, masking and SLAM's objectives.

  batch --(STM transcript roll, span masks, distractors: all from one key)--> masked inputs, targets
        --SlamPretrainer--> encoder outputs + quantizer + heads
        --losses.compose--> weighted sum of the terms of the kinds present

Interface: t5x's BaseModel (`optimizer_def`, `FEATURE_CONVERTER_CLS`, `get_initial_variables`
returning plain 'params' plus 'params_axes', `loss_fn`/`eval_fn` returning clu metrics,
`score_batch`, `predict_batch_with_aux`), each loss taking an extra `step`; `pretraining_loss`
gives the same loss with plain scalar metrics (slam_jax.trainer), `at_step(step)` a view whose
`loss_fn(params, batch, dropout_rng)` has the step bound (slam_jax.t5x_trainer.SlamTrainer passes
t5x's train-state step this way), `encode(params, batch)`. Everything random in a step (masks, the
STM roll, distractors, Gumbel noise, dropout) derives from `dropout_rng`, which both trainers fold
from (seed, step).

gin binds `make_model` (see gin/objectives/*.gin); the layers below it take plain dataclasses.
"""

import dataclasses
import importlib
from typing import Any, Dict, Mapping, Optional, Tuple

import clu.metrics
import gin
import jax
import jax.numpy as jnp
from t5x import models as t5x_models

from slam_jax import masking
from slam_jax import partitioning as partitioning_lib
from slam_jax import types
from slam_jax.losses import compose
from slam_jax.losses import contrastive as contrastive_lib
from slam_jax.losses import stm as stm_lib
from slam_jax.models import encoder as encoder_lib
from slam_jax.models import pretrainer as pretrainer_lib
from slam_jax.models import quantizer as quantizer_lib

Batch = Mapping[str, jnp.ndarray]
Metrics = Dict[str, jnp.ndarray]

# SLAM's TLM masks more aggressively than single-modality pre-training: ~50% of the transcript's
# tokens and ~75% of the speech frames (SLAM, arXiv 2110.10329, as summarised at
# anwarvic.github.io/speech-translation/SLAM; the paper's own text was not in the reference corpus).
# 1 - (1 - p)^10 = 0.75  =>  p = 0.1294.
PAIRED_SPEECH_MASKING = masking.SpeechMaskConfig(start_prob=0.1294, span_length=10)
PAIRED_TEXT_MASKING = masking.TextMaskConfig(mask_rate=0.5)


class _LazyClass:
  """Class attribute resolved on first access (keeps model.py importable without TensorFlow)."""

  def __init__(self, module: str, name: str):
    self._module, self._name = module, name

  def __get__(self, obj, objtype=None):
    return getattr(importlib.import_module(self._module), self._name)


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
  """Masking of each kind of row.

  Attributes:
    speech: frames of KIND_SPEECH rows (w2v-BERT / wav2vec 2.0: p = 0.065, M = 10).
    text: tokens of KIND_TEXT rows (SpanBERT: 15%, Geo(0.2) spans of at most 10, 80/10/10).
    paired_speech: frames of KIND_PAIRED rows (TLM).
    paired_text: transcript tokens of KIND_PAIRED rows (TLM).
  """

  speech: masking.SpeechMaskConfig = masking.SpeechMaskConfig()
  text: masking.TextMaskConfig = masking.TextMaskConfig()
  paired_speech: masking.SpeechMaskConfig = PAIRED_SPEECH_MASKING
  paired_text: masking.TextMaskConfig = PAIRED_TEXT_MASKING


class SlamModel(t5x_models.BaseModel):
  """SLAM pre-training model: a t5x BaseModel (runs under t5x's trainer and under ours).

  Args:
    encoder_config: encoder architecture.
    quantizer_config: codebooks and Gumbel temperature schedule.
    masking_config: span masking per kind of row.
    objectives: contrastive temperature, number of distractors, ...
    loss_weights: per-objective weights as a function of the step (staged pre-training).
    mask_token_id: id written at masked text positions; None = vocab_size - 1 (seqio vocabularies
      need `extra_ids >= 1`, or an encoder vocab_size one larger than the SentencePiece model, so
      that this id never occurs in real text).
    tie_text_embedding: the text MLM head reuses the token embedding.
    optimizer_def: t5x optimizer (`slam_jax.t5x_trainer.make_optimizer()`); only t5x's trainer
      reads it (slam_jax.train builds its optax optimizer from OptimizerConfig).
  """

  FEATURE_CONVERTER_CLS = _LazyClass("slam_jax.data.converters", "SlamFeatureConverter")

  def __init__(self, encoder_config: encoder_lib.EncoderConfig,
               quantizer_config: quantizer_lib.QuantizerConfig = quantizer_lib.QuantizerConfig(),
               masking_config: MaskingConfig = MaskingConfig(),
               objectives: compose.ObjectiveConfig = compose.ObjectiveConfig(),
               loss_weights: compose.LossWeightSchedule = compose.LossWeightSchedule(),
               mask_token_id: Optional[int] = None, tie_text_embedding: bool = True,
               optimizer_def: Optional[Any] = None):
    super().__init__(optimizer_def=optimizer_def)
    self.encoder_config = encoder_config
    self.quantizer_config = quantizer_config
    self.masking_config = masking_config
    self.objectives = objectives
    self.loss_weights = loss_weights
    vocab = encoder_config.vocab_size
    self.mask_token_id = vocab - 1 if mask_token_id is None else int(mask_token_id)
    if not 0 <= self.mask_token_id < vocab:
      raise ValueError(f"mask_token_id={self.mask_token_id} outside the vocabulary [0, {vocab})")
    self.module = pretrainer_lib.SlamPretrainer(encoder_config, quantizer_config,
                                                tie_text_embedding=tie_text_embedding)

  @property
  def compute_dtype(self):
    return self.encoder_config.compute_dtype

  @property
  def vocab_size(self) -> int:
    return self.encoder_config.vocab_size

  def chance_accuracies(self) -> Dict[str, float]:
    """Accuracy of guessing uniformly, per accuracy metric of `loss_fn` (for progress reports).

    Chance is a floor, not the baseline a model beats first: predicting frequent tokens or codes
    already scores above it.
    """
    per_code = 1.0 / self.quantizer_config.num_entries
    return {
        "text_mlm/accuracy": 1.0 / self.vocab_size,
        "tlm/text_accuracy": 1.0 / self.vocab_size,
        "speech_mlm/accuracy": per_code,
        "tlm/speech_accuracy": per_code,
        "contrastive/accuracy": 1.0 / (self.objectives.num_distractors + 1),
        "stm/accuracy": 0.5,
    }

  # ---------------------------------------------------------------- shapes and initialisation

  def input_shapes_and_types(self, batch_size: int, feature_lengths: Mapping[str, int]
                             ) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, Any]]:
    """Model-batch shapes/dtypes for `feature_lengths` {"speech": frames, "text": tokens}."""
    missing = {"speech", "text"} - set(feature_lengths)
    if missing:
      raise ValueError(f"feature_lengths needs keys 'speech' and 'text'; missing {sorted(missing)}")
    frames, length = int(feature_lengths["speech"]), int(feature_lengths["text"])
    shapes = {
        types.SPEECH_FEATURES: (batch_size, frames, self.encoder_config.num_mel_bins),
        types.SPEECH_MASK: (batch_size, frames),
        types.TEXT_TOKENS: (batch_size, length),
        types.TEXT_SEGMENT_IDS: (batch_size, length),
        types.TEXT_POSITIONS: (batch_size, length),
        types.KIND: (batch_size,),
    }
    dtypes = {k: jnp.int32 for k in shapes}
    dtypes[types.SPEECH_FEATURES] = jnp.float32
    return shapes, dtypes

  def get_initial_variables(self, rng: jax.Array, input_shapes: Mapping[str, Tuple[int, ...]],
                            input_types: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Initial variables from input shapes, as t5x wants them.

    Returns:
      {'params': plain arrays, 'params_axes': the same tree of `flax.linen.partitioning.AxisMetadata`
      leaves (logical axis names) with keys suffixed '_axes'}. `partitioning.boxed_params` turns it back into
      `nn.LogicallyPartitioned` boxes.
    """
    missing = set(types.MODEL_FEATURES) - set(input_shapes)
    if missing:
      raise ValueError(f"input_shapes lacks model features {sorted(missing)}")
    input_types = dict(input_types or {})
    batch = {k: jnp.zeros(input_shapes[k], input_types.get(
        k, jnp.float32 if k == types.SPEECH_FEATURES else jnp.int32))
             for k in types.MODEL_FEATURES}
    boxed = self.module.init({"params": rng}, *self._encoder_args(batch), deterministic=True)
    return partitioning_lib.split_axes(boxed["params"])

  # ------------------------------------------------------------------------------- objectives

  @staticmethod
  def _encoder_args(batch: Batch):
    return (batch[types.SPEECH_FEATURES], batch[types.SPEECH_MASK], batch[types.TEXT_TOKENS],
            batch[types.TEXT_SEGMENT_IDS], batch[types.TEXT_POSITIONS])

  def prepare(self, key: jax.Array, batch: Batch) -> Tuple[Dict[str, jnp.ndarray],
                                                         compose.Targets]:
    """Draws the STM roll and all masks; returns the masked model inputs and the targets.

    Args:
      key: PRNG key (the same key gives the same masks).
      batch: a model batch (see `slam_jax.types`).

    Returns:
      (inputs {feature name: array} with the text masked and transcripts rolled, targets).
    """
    missing = set(types.MODEL_FEATURES) - set(batch)
    if missing:
      raise ValueError(f"batch lacks model features {sorted(missing)}; it has {sorted(batch)}")
    cfg = self.masking_config
    swap_key, speech_key, paired_speech_key, text_key, paired_text_key, distractor_key = (
        jax.random.split(key, 6))
    kind = batch[types.KIND].astype(jnp.int32)
    is_text = kind == types.KIND_TEXT
    is_speech = kind == types.KIND_SPEECH
    is_paired = kind == types.KIND_PAIRED

    # STM negatives: half of the paired rows borrow the next paired row's transcript.
    swap = stm_lib.roll_transcripts(swap_key, is_paired)
    own = batch[types.TEXT_TOKENS]
    tokens = own[swap.source]
    segments = batch[types.TEXT_SEGMENT_IDS][swap.source]
    positions = batch[types.TEXT_POSITIONS][swap.source]
    differs = jnp.any(tokens != own, axis=1) | jnp.any(
        segments != batch[types.TEXT_SEGMENT_IDS], axis=1)
    stm_labels = (~(swap.swapped & differs)).astype(jnp.float32)

    # Speech span masks on the feature encoder's frames.
    valid = encoder_lib.SlamEncoder.subsampled_mask(self.encoder_config, batch[types.SPEECH_MASK])
    speech_mask = jnp.where(
        is_paired[:, None],
        masking.speech_span_mask(paired_speech_key, valid, cfg.paired_speech),
        masking.speech_span_mask(speech_key, valid, cfg.speech) & is_speech[:, None])

    # SpanBERT text masks (80/10/10), at the TLM rate on paired rows.
    maskable = masking.text_maskable(tokens, segments, cfg.text.special_ids)
    text_out = masking.text_span_mask(text_key, tokens, maskable & is_text[:, None], cfg.text,
                                      vocab_size=self.vocab_size, mask_id=self.mask_token_id)
    paired_out = masking.text_span_mask(
        paired_text_key, tokens, maskable & is_paired[:, None], cfg.paired_text,
        vocab_size=self.vocab_size, mask_id=self.mask_token_id)
    text_inputs = jnp.where(is_paired[:, None], paired_out.inputs, text_out.inputs)
    text_mask = jnp.where(is_paired[:, None], paired_out.mask, text_out.mask)

    distractors = contrastive_lib.sample_distractors(distractor_key, speech_mask,
                                                     self.objectives.num_distractors)
    inputs = {
        types.SPEECH_FEATURES: batch[types.SPEECH_FEATURES],
        types.SPEECH_MASK: batch[types.SPEECH_MASK],
        types.TEXT_TOKENS: text_inputs,
        types.TEXT_SEGMENT_IDS: segments,
        types.TEXT_POSITIONS: positions,
    }
    targets = compose.Targets(kind=kind, text_targets=tokens, text_mask=text_mask,
                              speech_mask=speech_mask, distractors=distractors,
                              stm_labels=stm_labels)
    return inputs, targets

  def pretraining_loss(self, params, batch: Batch, dropout_rng: Optional[jax.Array],
                       step=0) -> Tuple[jnp.ndarray, Metrics]:
    """Weighted SLAM loss of one batch, with plain scalar metrics (`loss_fn` wraps them for t5x).

    Args:
      params: the 'params' collection.
      batch: a model batch.
      dropout_rng: key for masks, the STM roll, distractors, Gumbel noise and dropout; None =
        evaluation (fixed masks from key 0, no dropout, no Gumbel noise).
      step: training step (int or traced scalar): loss-weight stage and Gumbel temperature.

    Returns:
      (loss, scalar metrics): 'loss'; '<term>/loss|accuracy|count|weight' for text_mlm,
      contrastive, speech_mlm, stm (and 'diversity/perplexity', 'tlm/text_*', 'tlm/speech_*');
      'codebook/perplexity' (soft), 'codebook/code_perplexity' (hard ids); 'examples/<kind>';
      'gumbel_temperature'.
    """
    deterministic = dropout_rng is None
    key = jax.random.PRNGKey(0) if deterministic else dropout_rng
    mask_key, dropout_key, gumbel_key = jax.random.split(key, 3)
    inputs, targets = self.prepare(mask_key, batch)
    rngs = None if deterministic else {"dropout": dropout_key, "gumbel": gumbel_key}
    out = self.module.apply({"params": params}, *self._encoder_args(inputs),
                            speech_span_mask=targets.speech_mask, step=step,
                            deterministic=deterministic, rngs=rngs)
    loss_inputs = compose.LossInputs(
        context=out.context, quantized=out.quantizer.quantized,
        quantized_ids=out.quantizer.quantized_ids, code_probs=out.quantizer.probs,
        target_ids=out.quantizer.ids, speech_logits=out.speech_logits,
        text_logits=out.text_logits, stm_logits=out.stm_logits,
        speech_valid=out.encoder.speech_valid)
    loss, metrics = compose.pretraining_loss(loss_inputs, targets,
                                             self.loss_weights.weights(step), self.objectives)
    speech_rows = targets.kind == types.KIND_SPEECH
    if self.objectives.speech_losses_on_paired:
      speech_rows = speech_rows | (targets.kind == types.KIND_PAIRED)
    metrics["codebook/code_perplexity"] = quantizer_lib.code_perplexity(
        out.quantizer.ids, out.encoder.speech_valid & speech_rows[:, None],
        self.quantizer_config.num_entries)
    metrics["gumbel_temperature"] = out.quantizer.temperature
    return loss, metrics

  def loss_fn(self, params, batch: Batch, dropout_rng: Optional[jax.Array], step=0,
              loss_scale: float = 1.0) -> Tuple[jnp.ndarray, Dict[str, clu.metrics.Metric]]:
    """t5x's loss: `pretraining_loss` times `loss_scale`, metrics as `clu.metrics.Average`.

    Args:
      params, batch, dropout_rng, step: see `pretraining_loss`.
      loss_scale: factor on the returned loss only (not on the 'loss' metric): t5x sums the
        gradients of its microbatches, so SlamTrainer passes 1 / num_microbatches and the update
        is the mean of the microbatch gradients, as in slam_jax.trainer.
    """
    loss, metrics = self.pretraining_loss(params, batch, dropout_rng, step=step)
    return loss * loss_scale, {k: clu.metrics.Average.from_model_output(jnp.asarray(v, jnp.float32))
                               for k, v in metrics.items()}

  def eval_fn(self, params, batch: Batch, step=0) -> Tuple[jnp.ndarray, Dict[str, Any]]:
    """`loss_fn` without dropout or Gumbel noise, with masks from a fixed key."""
    return self.loss_fn(params, batch, None, step=step)

  def at_step(self, step, loss_scale: float = 1.0) -> "StepBoundModel":
    """This model with `step` (and `loss_scale`) bound into `loss_fn` and `eval_fn`."""
    return StepBoundModel(self, step, loss_scale)

  def score_batch(self, params, batch: Batch, return_intermediates: bool = False, step=0
                  ) -> jnp.ndarray:
    """Per-example pre-training loss, float32 [batch] (lower = better modelled).

    Each row is scored alone (as a batch of one) by `eval_fn`: fixed masks, no dropout, no Gumbel
    noise, the loss weights of `step`. A lone paired row has no STM negative, so its STM term
    only scores the true pair. `return_intermediates` is not supported.
    """
    if return_intermediates:
      raise NotImplementedError("SlamModel.score_batch: return_intermediates is not supported")
    batch = {k: batch[k] for k in types.MODEL_FEATURES}

    def row_loss(row):
      return self.pretraining_loss(params, jax.tree_util.tree_map(lambda x: x[None], row), None,
                                   step=step)[0]

    return jax.vmap(row_loss)(batch)

  def predict_batch_with_aux(self, params, batch: Batch, rng: Optional[jax.Array] = None,
                             step=0, **unused_kwargs) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """Fills in masked text tokens and masked speech code ids (no dropout, no Gumbel noise).

    Masks are drawn as in training (SpanBERT spans on text rows, TLM rates on paired rows, speech
    spans), from `rng` (None = key 0, `eval_fn`'s masks); STM transcripts are rolled the same way.

    Returns:
      predictions: int32 [B, L] the input tokens with each masked position replaced by the
        model's argmax token.
      aux: 'text_mask' bool [B, L]; 'speech_mask' bool [B, T']; 'speech_ids' int32 [B, T', G]
        the quantizer's code ids (targets); 'predicted_speech_ids' int32 [B, T', G] argmax of the
        shared stack's code logits; 'stm_probability' float32 [B] P(speech and text match).
    """
    key = jax.random.PRNGKey(0) if rng is None else rng
    mask_key = jax.random.split(key, 3)[0]
    inputs, targets = self.prepare(mask_key, batch)
    out = self.module.apply({"params": params}, *self._encoder_args(inputs),
                            speech_span_mask=targets.speech_mask, step=step, deterministic=True)
    text_pred = jnp.argmax(out.text_logits, axis=-1).astype(jnp.int32)
    predictions = jnp.where(targets.text_mask, text_pred, targets.text_targets)
    aux = {
        "text_mask": targets.text_mask,
        "speech_mask": targets.speech_mask,
        "speech_ids": out.quantizer.ids,
        "predicted_speech_ids": jnp.argmax(out.speech_logits, axis=-1).astype(jnp.int32),
        "stm_probability": jax.nn.sigmoid(out.stm_logits),
    }
    return predictions, aux

  def encode(self, params, batch: Batch) -> encoder_lib.EncoderOutputs:
    """Encoder outputs of an unmasked batch (no dropout), for downstream use."""
    return self.module.apply({"params": params}, *self._encoder_args(batch),
                             method=pretrainer_lib.SlamPretrainer.encode)


class StepBoundModel:
  """`SlamModel.at_step(step)`: t5x's `loss_fn(params, batch, dropout_rng)` and
  `eval_fn(params, batch)` with the training step (traced scalar) and loss scale bound."""

  def __init__(self, model: SlamModel, step, loss_scale: float = 1.0):
    self.model, self.step, self.loss_scale = model, step, loss_scale

  def loss_fn(self, params, batch: Batch, dropout_rng: Optional[jax.Array]):
    return self.model.loss_fn(params, batch, dropout_rng, step=self.step,
                              loss_scale=self.loss_scale)

  def eval_fn(self, params, batch: Batch):
    return self.model.eval_fn(params, batch, step=self.step)

  def __getattr__(self, name):
    return getattr(self.model, name)


@gin.configurable(module="slam_jax.model")
def make_model(encoder_config: Optional[encoder_lib.EncoderConfig] = None,
               quantizer: quantizer_lib.QuantizerConfig = quantizer_lib.QuantizerConfig(),
               speech_masking: masking.SpeechMaskConfig = masking.SpeechMaskConfig(),
               text_masking: masking.TextMaskConfig = masking.TextMaskConfig(),
               paired_speech_masking: masking.SpeechMaskConfig = PAIRED_SPEECH_MASKING,
               paired_text_masking: masking.TextMaskConfig = PAIRED_TEXT_MASKING,
               objectives: compose.ObjectiveConfig = compose.ObjectiveConfig(),
               loss_weights: compose.LossWeightSchedule = compose.LossWeightSchedule(),
               mask_token_id: Optional[int] = None,
               tie_text_embedding: bool = True,
               optimizer_def: Optional[Any] = None) -> SlamModel:
  """Gin entry point: builds a `SlamModel` (bind `train.model = @make_model()`).

  Args:
    encoder_config: None = `make_encoder_config()` with its gin bindings (gin/models/*.gin).
    quantizer: codebooks and Gumbel temperature schedule.
    speech_masking, text_masking: masking of KIND_SPEECH / KIND_TEXT rows.
    paired_speech_masking, paired_text_masking: masking of KIND_PAIRED rows (TLM).
    objectives: contrastive temperature, distractors, w2v-BERT terms on paired speech.
    loss_weights: staged per-objective weights.
    mask_token_id: None = vocab_size - 1.
    tie_text_embedding: tie the text MLM head to the token embedding.
    optimizer_def: t5x optimizer (gin/t5x/pretrain.gin binds
      `slam_jax.t5x_trainer.make_optimizer()`); slam_jax.train ignores it.
  """
  if encoder_config is None:
    encoder_config = encoder_lib.make_encoder_config()
  return SlamModel(
      encoder_config, quantizer,
      MaskingConfig(speech=speech_masking, text=text_masking,
                    paired_speech=paired_speech_masking, paired_text=paired_text_masking),
      objectives, loss_weights, mask_token_id=mask_token_id,
      tie_text_embedding=tie_text_embedding, optimizer_def=optimizer_def)
