"""Composition of SLAM's objectives: each loss sees only the rows of its kind, then a weighted sum.

  term         rows                                   what
  text_mlm     KIND_TEXT                              SpanBERT masked tokens
  contrastive  KIND_SPEECH (+ KIND_PAIRED if asked)   w2v-BERT InfoNCE at masked frames
  diversity    same rows, all real frames             codebook diversity
  speech_mlm   same rows as contrastive               w2v-BERT masked prediction of code ids
  tlm          KIND_PAIRED with matching transcript   masked text + masked speech ids
  stm          KIND_PAIRED                            matched vs rolled transcript

A term with no rows of its kind in the batch is exactly 0 (and so is its gradient): every loss is a
mean that divides by max(count, 1).

Weights (SLAM, arXiv 2110.10329; secondary summary, the paper's text was not in the reference
corpus): stage 1 trains the text span-masking and w2v-BERT objectives only (~500k steps); stage 2
adds TLM and STM (another 250k-500k steps), summing all objectives' gradients. w2v-BERT (arXiv
2108.06209) weights its own terms L = L_c + L_m with L_c = L_w + 0.1 L_d; the weights of TLM/STM
relative to the others are not given in what we could check, so they default to 1.
"""

import dataclasses
from typing import Dict, Mapping, NamedTuple, Tuple

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
    speech_losses_on_paired: also apply the w2v-BERT terms to the speech of paired rows (their
      masked speech is always predicted by TLM).
  """

  contrastive_temperature: float = 0.1
  num_distractors: int = 100
  speech_losses_on_paired: bool = False


class LossInputs(NamedTuple):
  """The model outputs the losses read (all per row of the batch).

  Attributes:
    context: [B, T, Dq] projected contrastive-module outputs.
    quantized: [B, T, Dq] quantized vectors; quantized_ids int [B, T, G] their codes.
    code_probs: [B, T, G, V] noise-free quantizer probabilities.
    target_ids: int [B, T, G] masked-prediction targets (noise-free argmax).
    speech_logits: [B, T, G, V] speech MLM head on the shared stack.
    text_logits: [B, L, vocab] text MLM head on the shared stack.
    stm_logits: [B] match logits.
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
  """What the masking step decided.

  Attributes:
    kind: int [B] example kinds (`types.KIND_*`).
    text_targets: int [B, L] original tokens the encoder's text came from (after the STM swap).
    text_mask: bool [B, L] masked text positions.
    speech_mask: bool [B, T] masked frames (subsampled rate).
    distractors: contrastive distractors, sampled among `speech_mask` frames.
    stm_labels: [B] 1 where a paired row's transcript matches its speech.
  """

  kind: jnp.ndarray
  text_targets: jnp.ndarray
  text_mask: jnp.ndarray
  speech_mask: jnp.ndarray
  distractors: contrastive_lib.Distractors
  stm_labels: jnp.ndarray


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


def pretraining_loss(outputs: LossInputs, targets: Targets, weights: Mapping[str, jnp.ndarray],
                     config: ObjectiveConfig = ObjectiveConfig()
                     ) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """All SLAM terms on one batch, each on the rows of its kind, weighted and summed.

  Args:
    outputs: model outputs.
    targets: masks and labels.
    weights: {term: weight} (e.g. `LossWeightSchedule.weights(step)`).
    config: objective constants.

  Returns:
    (total loss, scalar metrics: '<term>/{loss,accuracy,count,...}', '<term>/weight', 'loss',
    'examples/{text,speech,paired}', 'codebook/perplexity').
  """
  b, t = outputs.speech_valid.shape
  reduce.check_shape("targets.kind", targets.kind, (b,))
  reduce.check_shape("targets.speech_mask", targets.speech_mask, (b, t))
  is_text = targets.kind == types.KIND_TEXT
  is_speech = targets.kind == types.KIND_SPEECH
  is_paired = targets.kind == types.KIND_PAIRED
  matched = is_paired & (targets.stm_labels > 0)

  speech_rows = is_speech | (is_paired if config.speech_losses_on_paired else False)
  valid = outputs.speech_valid.astype(bool)
  masked_frames = targets.speech_mask.astype(bool) & valid
  w2v_frames = masked_frames & speech_rows[:, None]
  text_mask = targets.text_mask.astype(bool)

  terms = {
      "text_mlm": mlm_lib.text_mlm_loss(outputs.text_logits, targets.text_targets,
                                        text_mask & is_text[:, None]),
      "contrastive": contrastive_lib.contrastive_loss(
          outputs.context, outputs.quantized, outputs.quantized_ids, w2v_frames,
          targets.distractors, config.contrastive_temperature),
      "diversity": diversity_lib.diversity_loss(outputs.code_probs, valid & speech_rows[:, None]),
      "speech_mlm": mlm_lib.speech_mlm_loss(outputs.speech_logits, outputs.target_ids, w2v_frames),
      "tlm": tlm_lib.tlm_loss(outputs.text_logits, targets.text_targets,
                              text_mask & matched[:, None], outputs.speech_logits,
                              outputs.target_ids, masked_frames & matched[:, None]),
      "stm": stm_lib.stm_loss(outputs.stm_logits, targets.stm_labels, is_paired),
  }
  total, metrics = weighted_sum(terms, weights)
  metrics["codebook/perplexity"] = metrics["diversity/perplexity"]
  for kind, name in types.KIND_NAMES.items():
    metrics[f"examples/{name}"] = jnp.sum(targets.kind == kind).astype(jnp.float32)
  return total, metrics
