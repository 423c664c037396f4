"""CTC speech recognition on the SLAM encoder: loss, greedy / prefix beam search decoding, model.

  speech --SlamEncoder (speech slot only)--> [B, T', D] at `feature_layer`
         --dropout--> head (dense) --> logits [B, T', V]   (V = the task vocabulary's size)
  loss = optax.ctc_loss, blank = id 0 (seqio's PAD, never a target); targets are the transcript's
  ids without EOS. Reported per target token: sum of utterance losses / sum of target lengths.

Decoding: greedy (best id per frame, collapse repeats, drop blanks) or CTC prefix beam search
(no language model), both on the host in `postprocess`; ids -> text via the task's vocabulary.
"""

import collections
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from slam_jax import types
from slam_jax.finetune import specaugment as specaugment_lib
from slam_jax.finetune import task_model
from slam_jax.models import encoder as encoder_lib
from slam_jax.models import layers as layers_lib

BLANK_ID = 0
EOS_ID = 1


def ctc_loss(logits: jnp.ndarray, logit_valid: jnp.ndarray, labels: jnp.ndarray,
             label_valid: jnp.ndarray, blank_id: int = BLANK_ID) -> jnp.ndarray:
  """Per-utterance CTC negative log-likelihood, float32 [B].

  Args:
    logits: [B, T, V] unnormalised scores.
    logit_valid: bool [B, T] real frames (a prefix).
    labels: int [B, L] target ids (no blanks).
    label_valid: bool [B, L] real targets (a prefix).
    blank_id: the blank's id.
  """
  if logits.ndim != 3 or logit_valid.shape != logits.shape[:2]:
    raise ValueError(f"logits {logits.shape} / logit_valid {logit_valid.shape}: expected "
                     "[B, T, V] and [B, T]")
  if labels.shape != label_valid.shape or labels.shape[0] != logits.shape[0]:
    raise ValueError(f"labels {labels.shape} / label_valid {label_valid.shape} do not match "
                     f"logits {logits.shape}")
  return optax.ctc_loss(logits.astype(jnp.float32), 1.0 - logit_valid.astype(jnp.float32),
                        labels.astype(jnp.int32), 1.0 - label_valid.astype(jnp.float32),
                        blank_id=blank_id)


def min_frames(labels: jnp.ndarray, label_valid: jnp.ndarray) -> jnp.ndarray:
  """Frames a CTC alignment of each [B, L] target needs, int32 [B]: its length plus one blank
  between each pair of equal neighbours."""
  valid = label_valid.astype(jnp.int32)
  repeats = jnp.sum((labels[:, 1:] == labels[:, :-1]) * valid[:, 1:] * valid[:, :-1], axis=1)
  return jnp.sum(valid, axis=1) + repeats


def targets_of(batch: Mapping[str, Any]) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(labels [B, L], valid [B, L]): the transcript's ids without EOS and padding."""
  tokens = batch[types.TEXT_TOKENS]
  valid = (batch[types.TEXT_SEGMENT_IDS] > 0) & (tokens != EOS_ID) & (tokens != BLANK_ID)
  return tokens, valid


def greedy_decode(ids: np.ndarray, valid: np.ndarray, blank_id: int = BLANK_ID) -> List[List[int]]:
  """Best path per row: collapse repeated ids, then drop blanks.

  Args:
    ids: int [B, T] argmax id per frame.
    valid: bool [B, T] real frames.
  """
  out = []
  for row, ok in zip(np.asarray(ids), np.asarray(valid).astype(bool)):
    seq, prev = [], None
    for t in row[ok]:
      t = int(t)
      if t != prev and t != blank_id:
        seq.append(t)
      prev = t
    out.append(seq)
  return out


def _logaddexp(a: float, b: float) -> float:
  if a == -math.inf:
    return b
  if b == -math.inf:
    return a
  return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: np.ndarray, beam_size: int = 8, blank_id: int = BLANK_ID,
                       token_prune: Optional[int] = None) -> List[int]:
  """CTC prefix beam search (Hannun et al. 2014) without a language model.

  Args:
    log_probs: float [T, V] log-softmax of one utterance's valid frames.
    beam_size: prefixes kept after each frame.
    token_prune: only the `token_prune` best ids per frame extend prefixes (default beam_size).

  Returns:
    The most probable label sequence (sum over all its alignments among the beam's paths).
  """
  log_probs = np.asarray(log_probs, np.float64)
  neg_inf = -math.inf
  # prefix -> (log P(ending in blank), log P(ending in non-blank))
  beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, neg_inf)}
  k = min(token_prune or beam_size, log_probs.shape[1])
  for frame in log_probs:
    top = np.argpartition(-frame, k - 1)[:k] if k < frame.shape[0] else np.arange(frame.shape[0])
    nxt: Dict[Tuple[int, ...], List[float]] = collections.defaultdict(lambda: [neg_inf, neg_inf])
    for prefix, (p_b, p_nb) in beams.items():
      p_total = _logaddexp(p_b, p_nb)
      for c in top:
        c = int(c)
        p = float(frame[c])
        if c == blank_id:
          entry = nxt[prefix]
          entry[0] = _logaddexp(entry[0], p_total + p)
          continue
        last = prefix[-1] if prefix else None
        extended = prefix + (c,)
        entry = nxt[extended]
        if c == last:
          # A repeat only extends after a blank; without one it stays the same prefix.
          entry[1] = _logaddexp(entry[1], p_b + p)
          same = nxt[prefix]
          same[1] = _logaddexp(same[1], p_nb + p)
        else:
          entry[1] = _logaddexp(entry[1], p_total + p)
    ranked = sorted(nxt.items(), key=lambda kv: -_logaddexp(*kv[1]))[:beam_size]
    beams = {prefix: (v[0], v[1]) for prefix, v in ranked}
  best = max(beams.items(), key=lambda kv: _logaddexp(*kv[1]))[0]
  return list(best)


class CtcNet(nn.Module):
  """Encoder + CTC head. Params: encoder (SlamEncoder's tree), head (dense D -> V).

  Attributes:
    encoder_config: the encoder.
    num_classes: output ids incl. blank (the task vocabulary's size).
    feature_layer: one of task_model.FEATURE_LAYERS.
    head_dropout: dropout on the features before the head.
  """

  encoder_config: encoder_lib.EncoderConfig
  num_classes: int
  feature_layer: str = "shared"
  head_dropout: float = 0.0

  def setup(self):
    self.encoder = encoder_lib.SlamEncoder(self.encoder_config)
    self.head = layers_lib.dense(self.num_classes, ("embed", "vocab"),
                                 dtype=self.encoder_config.compute_dtype)
    self.dropout = nn.Dropout(self.head_dropout)

  def __call__(self, speech_features, speech_mask, *, time_mask=None, deterministic=True):
    """Returns (float32 logits [B, T', V], bool valid [B, T'])."""
    batch = {types.SPEECH_FEATURES: speech_features, types.SPEECH_MASK: speech_mask}
    out = self.encoder(*task_model.speech_only_args(batch), speech_span_mask=time_mask,
                       deterministic=deterministic)
    x = task_model.speech_layer(out, self.feature_layer)
    x = self.dropout(x, deterministic=deterministic)
    return self.head(x).astype(jnp.float32), out.speech_valid


class CtcAsrModel(task_model.DownstreamModel):
  """CTC ASR over the task vocabulary (SentencePiece ids, or bytes/characters with a
  seqio.ByteVocabulary task).

  Args:
    encoder_config: encoder architecture (as pre-trained).
    vocabulary: the task's output vocabulary (decodes ids to text).
    feature_layer: 'shared' (default), 'speech' (speech-only stack) or 'features'.
    head_dropout: dropout before the head.
    specaugment: input masking during training.
    decoder: 'greedy' or 'beam' (prefix beam search).
    beam_size: prefixes kept by the beam search.
  """

  def __init__(self, encoder_config: encoder_lib.EncoderConfig, vocabulary,
               feature_layer: str = "shared", head_dropout: float = 0.0,
               specaugment: specaugment_lib.SpecAugmentConfig = specaugment_lib.SpecAugmentConfig(),
               decoder: str = "greedy", beam_size: int = 8):
    super().__init__(encoder_config)
    if decoder not in ("greedy", "beam"):
      raise ValueError(f"CtcAsrModel.decoder={decoder!r}: use 'greedy' or 'beam'")
    self.vocabulary = vocabulary
    self.num_classes = int(vocabulary.vocab_size)
    self.specaugment = specaugment
    self.decoder = decoder
    self.beam_size = beam_size
    self.net = CtcNet(encoder_config, self.num_classes,
                      task_model.check_feature_layer(feature_layer), head_dropout)

  def init(self, rng, batch):
    return self.net.init({"params": rng}, batch[types.SPEECH_FEATURES],
                         batch[types.SPEECH_MASK])["params"]

  def loss_fn(self, params, batch, rng, step=0):
    del step
    features, time_mask, rngs = batch[types.SPEECH_FEATURES], None, None
    if rng is not None:
      aug_key, dropout_key = jax.random.split(rng)
      time_key, freq_key = jax.random.split(aug_key)
      features = specaugment_lib.freq_mask(freq_key, features, self.specaugment)
      valid = encoder_lib.SlamEncoder.subsampled_mask(self.encoder_config,
                                                      batch[types.SPEECH_MASK])
      time_mask = specaugment_lib.time_mask(time_key, valid, self.specaugment)
      rngs = {"dropout": dropout_key}
    logits, logit_valid = self.net.apply({"params": params}, features, batch[types.SPEECH_MASK],
                                         time_mask=time_mask, deterministic=rng is None,
                                         rngs=rngs)
    labels, label_valid = targets_of(batch)
    per_utt = ctc_loss(logits, logit_valid, labels, label_valid)
    # An utterance whose transcript needs more frames than the encoder gives it has no
    # alignment (optax returns a huge loss that swamps the batch): left out and counted, like
    # PyTorch's CTCLoss(zero_infinity=True) in wav2vec 2.0 / fairseq fine-tuning.
    feasible = min_frames(labels, label_valid) <= jnp.sum(logit_valid, axis=1)
    rows = self.valid_rows(batch)
    infeasible = jnp.sum(rows * (1.0 - feasible))
    rows = rows * feasible
    lengths = jnp.sum(label_valid, axis=1).astype(jnp.float32) * rows
    per_utt = jnp.where(rows > 0, per_utt, 0.0)
    loss = jnp.sum(per_utt) / jnp.maximum(jnp.sum(lengths), 1.0)
    # Frame accuracy of the greedy path is not meaningful for CTC; report the blank share.
    blank_share = jnp.sum((jnp.argmax(logits, -1) == BLANK_ID) & logit_valid) / jnp.maximum(
        jnp.sum(logit_valid), 1)
    return loss, {"ctc/loss": loss, "ctc/utterance_loss": jnp.sum(per_utt) / jnp.maximum(
        jnp.sum(rows), 1.0), "ctc/blank_share": blank_share, "ctc/infeasible": infeasible}

  def predict(self, params, batch):
    logits, valid = self.net.apply({"params": params}, batch[types.SPEECH_FEATURES],
                                   batch[types.SPEECH_MASK])
    out = {"ids": jnp.argmax(logits, axis=-1).astype(jnp.int32), "valid": valid}
    if self.decoder == "beam":
      out["log_probs"] = jax.nn.log_softmax(logits, axis=-1)
    return out

  def decode_ids(self, predictions: Mapping[str, np.ndarray]) -> List[List[int]]:
    valid = np.asarray(predictions["valid"]).astype(bool)
    if self.decoder == "greedy":
      return greedy_decode(predictions["ids"], valid)
    log_probs = np.asarray(predictions["log_probs"])
    return [prefix_beam_search(lp[ok], self.beam_size) for lp, ok in zip(log_probs, valid)]

  def postprocess(self, predictions, batch):
    return [self.vocabulary.decode(ids) for ids in self.decode_ids(predictions)]

  def targets(self, batch):
    tokens = np.asarray(batch[types.TEXT_TOKENS])
    valid = np.asarray(targets_of({k: np.asarray(v) for k, v in batch.items()})[1])
    return [self.vocabulary.decode([int(t) for t in row[ok]]) for row, ok in zip(tokens, valid)]

  def check_batch(self, batch):
    _, valid = targets_of({k: np.asarray(v) for k, v in batch.items()})
    rows = np.asarray(self.valid_rows(batch)) > 0
    empty = np.nonzero((np.sum(valid, axis=1) == 0) & rows)[0]
    if empty.size:
      raise ValueError(f"CTC batch rows {empty[:5].tolist()} have an empty transcript (no "
                       "target ids in text_tokens): filter them out of the task (an ASR example "
                       "needs a transcript)")
    speech = np.sum(np.asarray(batch[types.SPEECH_MASK]), axis=1)
    silent = np.nonzero((speech == 0) & rows)[0]
    if silent.size:
      raise ValueError(f"CTC batch rows {silent[:5].tolist()} have no speech frames: is the task "
                       "a paired (speech + transcript) task?")


@gin.configurable(module="slam_jax.finetune")
def make_ctc_model(mixture_or_task_name: str = gin.REQUIRED,
                   encoder_config: Optional[encoder_lib.EncoderConfig] = None,
                   feature_layer: str = "shared", head_dropout: float = 0.0,
                   time_mask_prob: float = 0.0, time_mask_span: int = 5,
                   freq_masks: int = 0, freq_width: int = 8,
                   decoder: str = "greedy", beam_size: int = 8) -> CtcAsrModel:
  """Gin entry point: a CtcAsrModel over the task's text vocabulary (see CtcAsrModel, and
  specaugment.SpecAugmentConfig for the masking arguments)."""
  import seqio  # pylint: disable=g-import-not-at-top
  vocabulary = seqio.get_mixture_or_task(mixture_or_task_name).output_features[
      types.TASK_TEXT].vocabulary
  return CtcAsrModel(
      encoder_config or encoder_lib.make_encoder_config(), vocabulary,
      feature_layer=feature_layer, head_dropout=head_dropout,
      specaugment=specaugment_lib.SpecAugmentConfig(time_mask_prob, time_mask_span, freq_masks,
                                                    freq_width),
      decoder=decoder, beam_size=beam_size)
