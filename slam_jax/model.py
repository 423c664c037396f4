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

_P = "prepared/"  # prefix of `prepare_batch`'s arrays
_PREPARE_STREAM, _DROPOUT_STREAM = 0, 1  # fold_in streams of the step key


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
    num_text_pieces: real SentencePiece pieces (ids below it; random replacement tokens are drawn
      from [3, num_text_pieces): never PAD/EOS/UNK, the mask id or unused extra ids). None =
      vocab_size - 1 (pieces + the mask id). `check_vocabulary` sets it from the vocabulary.
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
               num_text_pieces: Optional[int] = None, optimizer_def: Optional[Any] = None):
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
    self.num_text_pieces = vocab - 1 if num_text_pieces is None else int(num_text_pieces)
    if not masking.UNK_ID + 1 < self.num_text_pieces <= vocab:
      raise ValueError(f"num_text_pieces={self.num_text_pieces} must lie in "
                       f"({masking.UNK_ID + 1}, vocab_size={vocab}]")
    self.module = pretrainer_lib.SlamPretrainer(encoder_config, quantizer_config,
                                                tie_text_embedding=tie_text_embedding)

  @property
  def compute_dtype(self):
    return self.encoder_config.compute_dtype

  @property
  def vocab_size(self) -> int:
    return self.encoder_config.vocab_size

  @property
  def random_token_ids(self) -> Tuple[int, int]:
    """[low, high) ids random replacement tokens are drawn from (the real pieces after UNK)."""
    return (masking.UNK_ID + 1, self.num_text_pieces)

  def check_vocabulary(self, vocabulary: Any) -> None:
    """Start-up check: the mask id is no real piece of `vocabulary` (a seqio vocabulary); the
    random replacement tokens are then drawn from its real pieces only."""
    self.num_text_pieces = masking.check_mask_id(vocabulary, self.mask_token_id, self.vocab_size)

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
    return types.model_batch_spec(batch_size, feature_lengths, self.encoder_config.num_mel_bins)

  def get_initial_variables(self, rng: jax.Array, input_shapes: Mapping[str, Tuple[int, ...]],
                            input_types: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Initial variables from input shapes, as t5x wants them.

    Returns:
      {'params': plain arrays, 'params_axes': the same tree of `flax.linen.partitioning.AxisMetadata`
      leaves (logical axis names) with keys suffixed '_axes'}. `partitioning.boxed_params` turns it back into
      `nn.LogicallyPartitioned` boxes.
    """
    input_shapes = dict(input_shapes)
    if types.KIND not in input_shapes and types.SPEECH_FEATURES in input_shapes:
      # seqio's Evaluator (t5x.eval) lists only features of rank > 0; kind is [batch].
      input_shapes[types.KIND] = tuple(input_shapes[types.SPEECH_FEATURES][:1])
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

  def prepare(self, key: jax.Array, batch: Batch, step=0
              ) -> Tuple[Dict[str, jnp.ndarray], Dict[str, jnp.ndarray], compose.Targets]:
    """Draws the STM negatives and all masks; returns the model inputs and the targets.

    Paired rows are "joint" (TLM/STM on: speech and transcript attend to each other) or, while
    both TLM and STM weigh 0 (`ObjectiveConfig.split_idle_pairs`), "split": their transcript gets
    a segment id of its own, so that speech and text do not see each other, and the row trains as
    a speech row (w2v-BERT masking and terms) plus a text row (SpanBERT masking and text MLM).

    Args:
      key: PRNG key (the same key gives the same masks).
      batch: a model batch (see `slam_jax.types`).
      step: training step (int or traced): the loss-weight stage.

    Returns:
      (inputs of the main pass {feature name: array}: masked text, the STM transcript on the
      negatives when stm_pass == 'masked'; inputs of the unmasked STM pass {feature name: array}
      (only the text features; speech is the batch's); targets).
    """
    missing = set(types.MODEL_FEATURES) - set(batch)
    if missing:
      raise ValueError(f"batch lacks model features {sorted(missing)}; it has {sorted(batch)}")
    cfg, obj = self.masking_config, self.objectives
    swap_key, speech_key, paired_speech_key, text_key, paired_text_key, distractor_key = (
        jax.random.split(key, 6))
    weights = self.loss_weights.weights(step)
    kind = batch[types.KIND].astype(jnp.int32)
    is_text = kind == types.KIND_TEXT
    is_speech = kind == types.KIND_SPEECH
    is_paired = kind == types.KIND_PAIRED
    pairs_on = (weights["tlm"] > 0) | (weights["stm"] > 0)
    split = is_paired & ~pairs_on if obj.split_idle_pairs else jnp.zeros_like(is_paired)
    joint = is_paired & ~split

    # STM negatives among the joint paired rows (never the row's own or an identical transcript).
    own = batch[types.TEXT_TOKENS]
    own_segments = batch[types.TEXT_SEGMENT_IDS]
    swap = stm_lib.sample_negatives(swap_key, joint, own, own_segments, obj.stm_negatives)
    stm_text = {types.TEXT_TOKENS: own[swap.source],
                types.TEXT_SEGMENT_IDS: own_segments[swap.source],
                types.TEXT_POSITIONS: batch[types.TEXT_POSITIONS][swap.source]}
    stm_labels = (~swap.swapped).astype(jnp.float32)
    if obj.stm_pass == "masked":  # the negatives' swapped transcripts go through the TLM pass
      tokens, segments, positions = (stm_text[types.TEXT_TOKENS],
                                     stm_text[types.TEXT_SEGMENT_IDS],
                                     stm_text[types.TEXT_POSITIONS])
      tlm_rows = joint & ~swap.swapped
    else:
      tokens, segments, positions = own, own_segments, batch[types.TEXT_POSITIONS]
      tlm_rows = joint

    # Speech span masks on the feature encoder's frames.
    valid = encoder_lib.SlamEncoder.subsampled_mask(self.encoder_config, batch[types.SPEECH_MASK])
    speech_mask = jnp.where(
        joint[:, None],
        masking.speech_span_mask(paired_speech_key, valid, cfg.paired_speech),
        masking.speech_span_mask(speech_key, valid, cfg.speech) & (is_speech | split)[:, None])

    # SpanBERT text masks (80/10/10), at the TLM rate on joint paired rows.
    maskable = masking.text_maskable(tokens, segments, cfg.text.special_ids)
    mask_args = dict(vocab_size=self.vocab_size, mask_id=self.mask_token_id,
                     random_ids=self.random_token_ids)
    text_out = masking.text_span_mask(text_key, tokens, maskable & (is_text | split)[:, None],
                                      cfg.text, **mask_args)
    paired_out = masking.text_span_mask(paired_text_key, tokens, maskable & joint[:, None],
                                        cfg.paired_text, **mask_args)
    text_inputs = jnp.where(joint[:, None], paired_out.inputs, text_out.inputs)
    text_mask = jnp.where(joint[:, None], paired_out.mask, text_out.mask)
    # A split row's transcript in a segment of its own: it and the speech do not attend.
    main_segments = jnp.where(split[:, None] & (segments > 0), segments + 1, segments)

    distractors = contrastive_lib.sample_distractors(distractor_key, speech_mask,
                                                     obj.num_distractors)
    inputs = {
        types.SPEECH_FEATURES: batch[types.SPEECH_FEATURES],
        types.SPEECH_MASK: batch[types.SPEECH_MASK],
        types.TEXT_TOKENS: text_inputs,
        types.TEXT_SEGMENT_IDS: main_segments,
        types.TEXT_POSITIONS: positions,
    }
    speech_rows = is_speech | split | (joint if obj.speech_losses_on_paired else False)
    targets = compose.Targets(
        kind=kind, text_targets=tokens, text_mask=text_mask, speech_mask=speech_mask,
        distractors=distractors, stm_labels=stm_labels, text_rows=is_text | split,
        speech_rows=speech_rows, tlm_rows=tlm_rows, stm_rows=joint)
    return inputs, stm_text, targets

  def prepare_batch(self, batch: Batch, rng: Optional[jax.Array], step=0) -> Dict[str, Any]:
    """Everything random of a step except dropout, drawn on the whole batch, as per-row arrays.

    The trainer calls this on the global batch before splitting it into microbatches; `loss_fn`
    on each microbatch then reads the masks, negatives (with their transcripts), distractors,
    per-row Gumbel keys and the whole batch's counts from it, so that the microbatch losses add
    up to the full-batch loss. `loss_fn` calls it itself on an unprepared batch.

    Args:
      batch: a model batch.
      rng: the step's key (None = evaluation: key 0, no Gumbel noise).
      step: training step.

    Returns:
      {name: array with the batch as leading axis}.
    """
    key = jax.random.PRNGKey(0) if rng is None else rng
    mask_key, gumbel_key = jax.random.split(jax.random.fold_in(key, _PREPARE_STREAM))
    inputs, stm_text, targets = self.prepare(mask_key, batch, step)
    rows = batch[types.KIND].shape[0]
    valid = encoder_lib.SlamEncoder.subsampled_mask(self.encoder_config, batch[types.SPEECH_MASK])
    out = {f"{_P}in/{k}": v for k, v in inputs.items()}
    out.update({f"{_P}stm/{k}": v for k, v in stm_text.items()})
    flat = targets._asdict()
    distractors = flat.pop("distractors")
    out.update({f"{_P}t/{k}": v for k, v in flat.items()})
    out[f"{_P}t/distractor_indices"] = distractors.indices
    out[f"{_P}t/distractor_valid"] = distractors.valid
    for name, count in compose.counts(targets, valid).items():
      out[f"{_P}count/{name}"] = jnp.full((rows,), count, jnp.float32)
    out[f"{_P}rows"] = jnp.full((rows,), rows, jnp.float32)
    row_keys = jax.random.split(gumbel_key, rows)
    if jnp.issubdtype(row_keys.dtype, jax.dtypes.prng_key):
      row_keys = jax.random.key_data(row_keys)
    out[f"{_P}gumbel_keys"] = row_keys
    return out

  @staticmethod
  def _unpack(prepared: Mapping[str, jnp.ndarray]):
    get = lambda group: {k[len(_P) + len(group) + 1:]: v for k, v in prepared.items()
                         if k.startswith(f"{_P}{group}/")}
    t = get("t")
    distractors = contrastive_lib.Distractors(t.pop("distractor_indices"),
                                              t.pop("distractor_valid"))
    return get("in"), get("stm"), compose.Targets(distractors=distractors, **t), get("count")

  def pretraining_loss(self, params, batch: Batch, dropout_rng: Optional[jax.Array],
                       step=0) -> Tuple[jnp.ndarray, Metrics]:
    """Weighted SLAM loss of one batch (or of one microbatch of a prepared batch), with plain
    scalar metrics (`loss_fn` wraps them for t5x).

    Args:
      params: the 'params' collection.
      batch: a model batch, or a slice of `prepare_batch`'s output (then each term is divided by
        the whole batch's count, scaled to the slice: the slices' mean is the full-batch loss).
      dropout_rng: key for masks, negatives, distractors, Gumbel noise and dropout; None =
        evaluation (fixed masks from key 0, no dropout, no Gumbel noise). On a prepared batch
        only dropout comes from it.
      step: training step (int or traced scalar): loss-weight stage and Gumbel temperature.

    Returns:
      (loss, scalar metrics): 'loss'; '<term>/loss|accuracy|count|weight' for text_mlm,
      contrastive, speech_mlm, stm (and 'diversity/perplexity', 'tlm/text_*', 'tlm/speech_*');
      'codebook/perplexity' (soft), 'codebook/code_perplexity' (hard ids); 'examples/<kind>'
      (rows of the whole batch); 'rows/<kind>' (share of the batch's rows that bear a loss, per
      kind) and 'rows/idle'; 'gumbel_temperature'.
    """
    loss, metrics, _ = self.loss_and_outputs(params, batch, dropout_rng, step)
    return loss, metrics

  def loss_and_outputs(self, params, batch: Batch, dropout_rng: Optional[jax.Array], step=0
                       ) -> Tuple[jnp.ndarray, Metrics, Dict[str, Any]]:
    """`loss_fn` plus what its terms were computed from (for tests and analysis).

    Returns:
      (loss, metrics, {'outputs': PretrainerOutputs of the main pass, 'stm_logits': [B] of the
      STM pass, 'prepared': the prepared (micro)batch}).
    """
    deterministic = dropout_rng is None
    if f"{_P}rows" not in batch:
      batch = self.prepare_batch(batch, dropout_rng, step)
    inputs, stm_text, targets, global_counts = self._unpack(batch)
    local_rows = targets.kind.shape[0]
    scale = local_rows / batch[f"{_P}rows"][0]  # this slice's share of the batch
    normalisers = {k: v[0] * scale for k, v in global_counts.items()}
    weights = self.loss_weights.weights(step)
    dropout_key = None if deterministic else jax.random.fold_in(dropout_rng, _DROPOUT_STREAM)
    main_key, stm_key = (None, None) if deterministic else jax.random.split(dropout_key)
    out = self.module.apply(
        {"params": params}, *self._encoder_args(inputs), speech_span_mask=targets.speech_mask,
        step=step, deterministic=deterministic,
        gumbel_keys=None if deterministic else batch[f"{_P}gumbel_keys"],
        rngs=None if deterministic else {"dropout": main_key})
    stm_logits = out.stm_logits
    if self.objectives.stm_pass == "unmasked":
      def stm_pass(_):
        return self.module.apply(
            {"params": params}, inputs[types.SPEECH_FEATURES], inputs[types.SPEECH_MASK],
            stm_text[types.TEXT_TOKENS], stm_text[types.TEXT_SEGMENT_IDS],
            stm_text[types.TEXT_POSITIONS], deterministic=deterministic,
            rngs=None if deterministic else {"dropout": stm_key},
            method=pretrainer_lib.SlamPretrainer.match_logits)
      # Skipped (not just weighted 0) in stage 1 and in batches without paired rows.
      run = (weights["stm"] > 0) & jnp.any(targets.stm_rows)
      stm_logits = jax.lax.cond(run, stm_pass, lambda _: jnp.zeros((local_rows,), jnp.float32),
                                None)
    target_ids = (out.quantizer.quantized_ids if self.objectives.mlm_target == "sampled"
                  else out.quantizer.ids)
    loss_inputs = compose.LossInputs(
        context=out.context, quantized=out.quantizer.quantized,
        quantized_ids=out.quantizer.quantized_ids, code_probs=out.quantizer.probs,
        target_ids=target_ids, speech_logits=out.speech_logits,
        text_logits=out.text_logits, stm_logits=stm_logits,
        speech_valid=out.encoder.speech_valid)
    loss, metrics = compose.pretraining_loss(loss_inputs, targets, weights, self.objectives,
                                             normalisers)
    # Counts of the whole batch (the same in every microbatch, so their mean is right too).
    for term, name in (("text_mlm", "text_mlm"), ("contrastive", "contrastive"),
                       ("diversity", "diversity"), ("speech_mlm", "speech_mlm"),
                       ("tlm", "tlm_text"), ("tlm", "tlm_speech"), ("stm", "stm")):
      key = f"{term}/count" if term != "tlm" else f"tlm/{name[4:]}_count"
      metrics[key] = global_counts[name][0]
    bearing = compose.bearing_rows(targets, weights)
    for kind, name in types.KIND_NAMES.items():
      of_kind = targets.kind == kind
      metrics[f"examples/{name}"] = jnp.sum(of_kind).astype(jnp.float32) / scale
      metrics[f"rows/{name}"] = jnp.sum(of_kind & bearing).astype(jnp.float32) / local_rows
    metrics["rows/idle"] = jnp.sum(~bearing).astype(jnp.float32) / local_rows
    code_frames = out.encoder.speech_valid & targets.speech_rows[:, None]  # the speech rows' frames
    metrics["codebook/code_perplexity"] = quantizer_lib.code_perplexity(
        out.quantizer.ids, code_frames, self.quantizer_config.num_entries)
    # Share of those frames whose Gumbel-sampled code is the noise-free argmax: near 0 means the
    # noise, not the input, picks the contrastive targets (docs/objectives.md); 1 in eval.
    same_code = jnp.all(out.quantizer.quantized_ids == out.quantizer.ids, axis=-1)
    frames = code_frames.astype(jnp.float32)
    metrics["codebook/sampled_is_argmax"] = (jnp.sum(same_code * frames)
                                             / jnp.maximum(jnp.sum(frames), 1.0))
    metrics["gumbel_temperature"] = out.quantizer.temperature
    return loss, metrics, {"outputs": out, "stm_logits": stm_logits, "prepared": batch}

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

    Masks and STM negatives are drawn as in training by `prepare_batch`, from `rng` (None = key 0,
    `eval_fn`'s masks); the forward passes are `eval_fn`'s (no dropout, no Gumbel noise).

    Returns:
      predictions: int32 [B, L] the input tokens with each masked position replaced by the
        model's argmax token.
      aux: 'text_mask' bool [B, L]; 'speech_mask' bool [B, T']; 'speech_ids' int32 [B, T', G]
        the quantizer's code ids (targets); 'predicted_speech_ids' int32 [B, T', G] argmax of the
        shared stack's code logits; 'stm_probability' float32 [B] P(speech and text match).
    """
    batch = {k: batch[k] for k in types.MODEL_FEATURES}
    prepared = self.prepare_batch(batch, rng, step)
    _, _, extra = self.loss_and_outputs(params, prepared, None, step)
    _, _, targets, _ = self._unpack(prepared)
    out = extra["outputs"]
    text_pred = jnp.argmax(out.text_logits, axis=-1).astype(jnp.int32)
    predictions = jnp.where(targets.text_mask, text_pred, targets.text_targets)
    aux = {
        "text_mask": targets.text_mask,
        "speech_mask": targets.speech_mask,
        "speech_ids": out.quantizer.ids,
        "predicted_speech_ids": jnp.argmax(out.speech_logits, axis=-1).astype(jnp.int32),
        # The STM pass of the objective (unmasked pairs by default); 0.5 where it did not run.
        "stm_probability": jax.nn.sigmoid(extra["stm_logits"]),
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
               vocabulary_task: Optional[str] = None,
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
    vocabulary_task: a registered seqio task or mixture (e.g. %MIXTURE_OR_TASK_NAME) whose text
      vocabulary is checked at start-up (`SlamModel.check_vocabulary`); None = no check.
    optimizer_def: t5x optimizer (gin/t5x/pretrain.gin binds
      `slam_jax.t5x_trainer.make_optimizer()`); slam_jax.train ignores it.
  """
  if encoder_config is None:
    encoder_config = encoder_lib.make_encoder_config()
  model = SlamModel(
      encoder_config, quantizer,
      MaskingConfig(speech=speech_masking, text=text_masking,
                    paired_speech=paired_speech_masking, paired_text=paired_text_masking),
      objectives, loss_weights, mask_token_id=mask_token_id,
      tie_text_embedding=tie_text_embedding, optimizer_def=optimizer_def)
  if vocabulary_task:
    import seqio  # pylint: disable=g-import-not-at-top
    task = seqio.get_mixture_or_task(vocabulary_task)
    model.check_vocabulary(task.output_features[types.TASK_TEXT].vocabulary)
  return model
