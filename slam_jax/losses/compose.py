"""Composition of SLAM's objectives: each loss sees only its rows, then a weighted sum.

  term         rows (`Targets.*_rows`)                        what
  text_mlm     KIND_TEXT (+ idle paired rows' transcripts)    SpanBERT masked tokens
  contrastive  KIND_SPEECH (+ idle paired rows' speech,        w2v-BERT InfoNCE at masked frames
               + paired speech if speech_losses_on_paired)
  diversity    same rows, all real frames                     codebook diversity
  speech_mlm   same rows as contrastive                       w2v-BERT masked prediction of codes
  tlm          KIND_PAIRED scored with their own transcript   masked text + masked speech codes
  stm          KIND_PAIRED                                    matched vs another row's transcript

"Idle" paired rows: while TLM and STM both weigh 0 (SLAM's stage 1), a paired row trains as a
speech row plus a text row (`ObjectiveConfig.split_idle_pairs`; `SlamModel.prepare` keeps the two
modalities from attending to each other), so a stage-1 batch wastes none of its rows.

A term with no rows in the batch is exactly 0 (and so is its gradient). Each term is a sum over its
positions divided by a normaliser: by default its own count; `SlamModel` passes the whole batch's
count scaled to the microbatch, so that microbatch losses add up to the full-batch loss.

Weights (SLAM, arXiv 2110.10329; secondary summary, the paper's text was not in the reference
corpus): stage 1 trains the text span-masking and w2v-BERT objectives only (~500k steps); stage 2
adds TLM and STM (another 250k-500k steps), summing all objectives' gradients. w2v-BERT (arXiv
2108.06209) weights its own terms L = L_c + L_m with L_c = L_w + 0.1 L_d; the weights of TLM/STM
relative to the others are not given in what we could check, so they default to 1.
"""

import dataclasses
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import gin
import jax.numpy as jnp

from slam_jax import types
from slam_jax.losses import contrastive as contrastive_lib
from slam_jax.losses import diversity as diversity_lib
from slam_jax.losses import mlm as mlm_lib
from slam_jax.losses import reduce
from slam_jax.losses import stm as stm_lib
from slam_jax.losses import tlm as tlm_lib

TERMS = ("text_mlm", "contrastive", "diversity", "speech_mlm", "tlm", "stm")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Weight of each objective in the total (0 switches a term off)."""

  text_mlm: float = 1.0
  contrastive: float = 1.0
  diversity: float = 0.1  # wav2vec 2.0 / w2v-BERT alpha
  speech_mlm: float = 1.0
  tlm: float = 1.0
  stm: float = 1.0

  def as_dict(self) -> Dict[str, float]:
    return dataclasses.asdict(self)


STAGE1 = LossWeights(tlm=0.0, stm=0.0)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LossWeightSchedule:
  """SLAM's staged pre-training: `stage1` weights before `stage2_start_step`, `stage2` from then on.

  Attributes:
    stage1: weights of the first stage (SLAM: text MLM + w2v-BERT only).
    stage2: weights from `stage2_start_step` (SLAM: all objectives).
    stage2_start_step: first step of stage 2 (SLAM: 500k). 0 = stage 2 from the start.
  """

  stage1: LossWeights = STAGE1
  stage2: LossWeights = LossWeights()
  stage2_start_step: int = 500_000

  def weights(self, step) -> Dict[str, jnp.ndarray]:
    """{term: weight} at `step` (int or traced scalar)."""
    in_stage2 = jnp.asarray(step) >= self.stage2_start_step
    one, two = self.stage1.as_dict(), self.stage2.as_dict()
    return {k: jnp.where(in_stage2, two[k], one[k]).astype(jnp.float32) for k in TERMS}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  """Constants of the objectives themselves.

  Attributes:
    contrastive_temperature: kappa of the InfoNCE softmax (wav2vec 2.0: 0.1).
    num_distractors: K distractors per masked frame (wav2vec 2.0: 100).
    speech_losses_on_paired: also apply the w2v-BERT terms to the speech of paired rows in stage 2
      (their masked speech is always predicted by TLM).
    mlm_target: the code the masked prediction predicts: 'sampled' (the Gumbel-sampled code the
      contrastive positive is made of; fairseq2's w2v-BERT) or 'argmax' (the noise-free argmax).
      They are the same in evaluation.
    stm_pass: 'unmasked' (ALBEF's ITM: a second pass over the rows with clean speech and
      transcripts, own or another row's) or 'masked' (STM read off the TLM pass, where the
      negatives' masked transcripts are swapped in and left out of TLM).
    stm_negatives: 'random' or 'hard' in-batch negatives (`losses.stm.sample_negatives`).
    split_idle_pairs: while TLM and STM weigh 0, paired rows train as speech + text rows.
  """

  contrastive_temperature: float = 0.1
  num_distractors: int = 100
  speech_losses_on_paired: bool = False
  mlm_target: str = "sampled"
  stm_pass: str = "unmasked"
  stm_negatives: str = "random"
  split_idle_pairs: bool = True

  def __post_init__(self):
    for name, value, allowed in (("mlm_target", self.mlm_target, MLM_TARGETS),
                                 ("stm_pass", self.stm_pass, STM_PASSES),
                                 ("stm_negatives", self.stm_negatives, stm_lib.NEGATIVES)):
      if value not in allowed:
        raise ValueError(f"ObjectiveConfig.{name}={value!r}; choose one of {allowed}")


MLM_TARGETS = ("sampled", "argmax")
STM_PASSES = ("unmasked", "masked")
# Normalisers: the number of positions each term averages over (speech ones in frames).
COUNTS = ("text_mlm", "contrastive", "diversity", "speech_mlm", "tlm_text", "tlm_speech", "stm")


class LossInputs(NamedTuple):
  """The model outputs the losses read (all per row of the batch).

  Attributes:
    context: [B, T, Dq] projected contrastive-module outputs.
    quantized: [B, T, Dq] quantized vectors; quantized_ids int [B, T, G] their codes.
    code_probs: [B, T, G, V] noise-free quantizer probabilities.
    target_ids: int [B, T, G] masked-prediction targets (`ObjectiveConfig.mlm_target`).
    speech_logits: [B, T, G, V] speech MLM head on the shared stack.
    text_logits: [B, L, vocab] text MLM head on the shared stack.
    stm_logits: [B] match logits (of the STM pass).
    speech_valid: bool [B, T] real frames.
  """

  context: jnp.ndarray
  quantized: jnp.ndarray
  quantized_ids: jnp.ndarray
  code_probs: jnp.ndarray
  target_ids: jnp.ndarray
  speech_logits: jnp.ndarray
  text_logits: jnp.ndarray
  stm_logits: jnp.ndarray
  speech_valid: jnp.ndarray


class Targets(NamedTuple):
  """What the masking step decided (every field has the batch as its leading axis).

  Attributes:
    kind: int [B] example kinds (`types.KIND_*`).
    text_targets: int [B, L] original tokens the main pass's text came from.
    text_mask: bool [B, L] masked text positions.
    speech_mask: bool [B, T] masked frames (subsampled rate).
    distractors: contrastive distractors, sampled among `speech_mask` frames.
    stm_labels: [B] 1 where a paired row's STM transcript is its own.
    text_rows: bool [B] rows whose masked text the text MLM scores.
    speech_rows: bool [B] rows the w2v-BERT terms score.
    tlm_rows: bool [B] rows TLM scores.
    stm_rows: bool [B] rows STM scores.
  """

  kind: jnp.ndarray
  text_targets: jnp.ndarray
  text_mask: jnp.ndarray
  speech_mask: jnp.ndarray
  distractors: contrastive_lib.Distractors
  stm_labels: jnp.ndarray
  text_rows: jnp.ndarray
  speech_rows: jnp.ndarray
  tlm_rows: jnp.ndarray
  stm_rows: jnp.ndarray


def weighted_sum(terms: Mapping[str, Tuple[jnp.ndarray, Mapping[str, jnp.ndarray]]],
                 weights: Mapping[str, jnp.ndarray]) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """sum_k weights[k] * terms[k].loss, with metrics flattened as '<term>/<metric>'."""
  missing = set(terms) - set(weights)
  if missing:
    raise ValueError(f"no weight for loss terms {sorted(missing)}; weights has {sorted(weights)}")
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for name, (loss, term_metrics) in terms.items():
    total = total + jnp.asarray(weights[name], jnp.float32) * loss
    metrics[f"{name}/weight"] = jnp.asarray(weights[name], jnp.float32)
    for key, value in term_metrics.items():
      metrics[f"{name}/{key}"] = value
  metrics["loss"] = total
  return total, metrics


def _scored(targets: Targets, speech_valid: jnp.ndarray):
  """The positions each term scores: {name: bool array}."""
  valid = speech_valid.astype(bool)
  masked_frames = targets.speech_mask.astype(bool) & valid
  text_mask = targets.text_mask.astype(bool)
  w2v_frames = masked_frames & targets.speech_rows[:, None]
  return {
      "text_mlm": text_mask & targets.text_rows[:, None],
      "contrastive": w2v_frames & jnp.any(targets.distractors.valid, axis=-1),
      "diversity": valid & targets.speech_rows[:, None],
      "speech_mlm": w2v_frames,
      "tlm_text": text_mask & targets.tlm_rows[:, None],
      "tlm_speech": masked_frames & targets.tlm_rows[:, None],
      "stm": targets.stm_rows.astype(bool),
  }


def counts(targets: Targets, speech_valid: jnp.ndarray) -> Dict[str, jnp.ndarray]:
  """{name in COUNTS: float32 number of positions the term averages over} for this batch."""
  return {k: jnp.sum(v.astype(jnp.float32)) for k, v in _scored(targets, speech_valid).items()}


def pretraining_loss(outputs: LossInputs, targets: Targets, weights: Mapping[str, jnp.ndarray],
                     config: ObjectiveConfig = ObjectiveConfig(),
                     normalisers: Optional[Mapping[str, jnp.ndarray]] = None
                     ) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """All SLAM terms on one batch, each on its rows, weighted and summed.

  Args:
    outputs: model outputs.
    targets: masks, labels and which rows each term scores.
    weights: {term: weight} (e.g. `LossWeightSchedule.weights(step)`).
    config: objective constants.
    normalisers: {name in COUNTS: divisor of that term's sums}; None = each term's own count.

  Returns:
    (total loss, scalar metrics: '<term>/{loss,accuracy,count,...}', '<term>/weight', 'loss',
    'codebook/perplexity').
  """
  b, t = outputs.speech_valid.shape
  reduce.check_shape("targets.kind", targets.kind, (b,))
  reduce.check_shape("targets.speech_mask", targets.speech_mask, (b, t))
  for name in ("text_rows", "speech_rows", "tlm_rows", "stm_rows"):
    reduce.check_shape(f"targets.{name}", getattr(targets, name), (b,))
  norm = dict(normalisers or {})
  scored = _scored(targets, outputs.speech_valid)
  w2v_frames = scored["speech_mlm"]
  terms = {
      "text_mlm": mlm_lib.text_mlm_loss(outputs.text_logits, targets.text_targets,
                                        scored["text_mlm"], norm.get("text_mlm")),
      "contrastive": contrastive_lib.contrastive_loss(
          outputs.context, outputs.quantized, outputs.quantized_ids, w2v_frames,
          targets.distractors, config.contrastive_temperature, norm.get("contrastive")),
      "diversity": diversity_lib.diversity_loss(outputs.code_probs, scored["diversity"],
                                                norm.get("diversity")),
      "speech_mlm": mlm_lib.speech_mlm_loss(outputs.speech_logits, outputs.target_ids,
                                            w2v_frames, norm.get("speech_mlm")),
      "tlm": tlm_lib.tlm_loss(outputs.text_logits, targets.text_targets, scored["tlm_text"],
                              outputs.speech_logits, outputs.target_ids, scored["tlm_speech"],
                              norm.get("tlm_text"), norm.get("tlm_speech")),
      "stm": stm_lib.stm_loss(outputs.stm_logits, targets.stm_labels, scored["stm"],
                              norm.get("stm")),
  }
  total, metrics = weighted_sum(terms, weights)
  metrics["codebook/perplexity"] = metrics["diversity/perplexity"]
  return total, metrics


def bearing_rows(targets: Targets, weights: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
  """bool [B]: rows at least one term with a nonzero weight scores."""
  on = {k: jnp.asarray(w) > 0 for k, w in weights.items()}
  return ((targets.text_rows & on["text_mlm"])
          | (targets.speech_rows & (on["contrastive"] | on["diversity"] | on["speech_mlm"]))
          | (targets.tlm_rows & on["tlm"]) | (targets.stm_rows & on["stm"]))
