"""Seq2SeqModel: speech -> SLAM encoder -> Transformer decoder -> text (ST or attention ASR).

    speech_features [B, T, 80], speech_mask [B, T]
      --SlamEncoder (speech only; the text slot is empty)--> shared_speech [B, T', E], speech_valid
      --TransformerDecoder (teacher forcing on target_tokens)--> logits [B, L, V_target]
      --label-smoothed cross-entropy (slam_jax/losses/cross_entropy.py)

Param tree: {'encoder': SlamEncoder params (the pre-training checkpoint's 'encoder' subtree, so a
partial restore fills it), 'head': TransformerDecoder params}. The model follows the fine-tuning
interface (`init`, `loss_fn`, `predict`, `postprocess`, `encoder_param_key`) and t5x's
(`get_initial_variables`, `input_shapes_and_types`), so `slam_jax.trainer.PartitionedTrainer`
runs it too.

Model batch: the SLAM model batch (slam_jax/types.py) of PAIRED rows whose text slot holds the
*target* (the translation, or the transcript for ASR) in the task's target vocabulary:
speech_features, speech_mask, text_tokens [B, L] (target ids ending in EOS, 0-padded), plus an
optional `valid` [B] (0 = an evaluation padding row). So the fine-tuning loop's data path
(slam_jax/finetune/data.py) serves seq2seq tasks unchanged; TASK_FEATURE_LENGTHS["text"] is the
target length and the decoding buffer. `predict` decodes with `slam_jax.decoding` (greedy or
beam, max length relative to the row's encoder length); `postprocess` detokenizes.
"""

import dataclasses
import functools
from typing import Any, Dict, List, Mapping, Optional, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import decoding
from slam_jax import types
from slam_jax.losses import cross_entropy
from slam_jax.finetune import task_model as task_model_lib
from slam_jax.models import decoder as decoder_lib
from slam_jax.models import encoder as encoder_lib

TARGET_TOKENS = types.TEXT_TOKENS  # int32 [B, L] target ids ending in EOS, 0 = padding.
MODEL_FEATURES = (types.SPEECH_FEATURES, types.SPEECH_MASK, TARGET_TOKENS)
VALID = "valid"  # optional [B]: 0 marks the evaluator's padding rows.

Batch = Mapping[str, jnp.ndarray]


class SpeechSeq2Seq(nn.Module):
  """The flax module: `encoder` (SlamEncoder) and `head` (TransformerDecoder)."""
  encoder_config: encoder_lib.EncoderConfig
  decoder_config: decoder_lib.DecoderConfig

  def setup(self):
    self.encoder = encoder_lib.SlamEncoder(self.encoder_config)
    self.head = decoder_lib.TransformerDecoder(self.decoder_config)

  def encode(self, speech_features, speech_mask, deterministic=True):
    """(memory [B, T', E], memory_valid bool [B, T']) of speech-only rows."""
    b = speech_features.shape[0]
    empty = jnp.zeros((b, 1), jnp.int32)
    out = self.encoder(speech_features, speech_mask, empty, empty, empty,
                       deterministic=deterministic)
    return out.shared_speech, out.speech_valid

  def __call__(self, speech_features, speech_mask, target_tokens, deterministic=True):
    """Teacher-forced float32 logits [B, L, V]."""
    memory, valid = self.encode(speech_features, speech_mask, deterministic)
    return self.head(decoder_lib.shift_right(target_tokens), memory, valid,
                     deterministic=deterministic)

  def init_cache(self, speech_features, speech_mask, max_length: int):
    memory, valid = self.encode(speech_features, speech_mask)
    return self.head.init_cache(memory, valid, max_length), jnp.sum(valid, axis=-1)

  def decode_step(self, tokens, step, cache):
    return self.head.decode_step(tokens, step, cache)


class Seq2SeqModel(task_model_lib.DownstreamModel):
  """Speech-to-text with an attention decoder (see module docstring).

  Args:
    encoder_config: the (pre-trained) encoder's architecture.
    decoder_config: the decoder; its vocab_size is the target vocabulary's.
    decode_config: beam size, length penalty, max length relative to the input.
    label_smoothing: e of the training loss.
    vocabulary: the target seqio vocabulary for `postprocess`, or a function returning it
      (None: ids joined by spaces).
  """

  encoder_param_key = "encoder"
  extra_features: Dict[str, Any] = {}

  def __init__(self, encoder_config: encoder_lib.EncoderConfig,
               decoder_config: decoder_lib.DecoderConfig,
               decode_config: decoding.DecodeConfig = decoding.DecodeConfig(),
               label_smoothing: float = 0.1, vocabulary: Any = None):
    super().__init__(encoder_config)
    self.decoder_config = decoder_config
    self.decode_config = decode_config
    self.label_smoothing = label_smoothing
    self.vocabulary = vocabulary
    self.module = SpeechSeq2Seq(encoder_config, decoder_config)

  # ------------------------------------------------------------------------- initialisation
  def input_shapes_and_types(self, batch_size: int, feature_lengths: Mapping[str, int]
                             ) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, Any]]:
    """Model-batch shapes/dtypes for {"speech": frames, "text": target tokens}."""
    missing = {"speech", "text"} - set(feature_lengths)
    if missing:
      raise ValueError(f"feature_lengths (TASK_FEATURE_LENGTHS) needs 'speech' (frames) and "
                       f"'text' (target tokens); missing {sorted(missing)}")
    frames, length = int(feature_lengths["speech"]), int(feature_lengths["text"])
    shapes = {types.SPEECH_FEATURES: (batch_size, frames, self.encoder_config.num_mel_bins),
              types.SPEECH_MASK: (batch_size, frames), types.TEXT_TOKENS: (batch_size, length),
              types.TEXT_SEGMENT_IDS: (batch_size, length),
              types.TEXT_POSITIONS: (batch_size, length), types.KIND: (batch_size,)}
    dtypes = {k: jnp.int32 for k in shapes}
    dtypes[types.SPEECH_FEATURES] = jnp.float32
    return shapes, dtypes

  @property
  def compute_dtype(self):
    return self.encoder_config.compute_dtype

  def get_initial_variables(self, rng: jax.Array, input_shapes: Mapping[str, Tuple[int, ...]],
                            input_types: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """{'params': {'encoder', 'head'}} as logically partitioned boxes."""
    input_types = dict(input_types or {})
    batch = {k: jnp.zeros(input_shapes[k], input_types.get(
        k, jnp.float32 if k == types.SPEECH_FEATURES else jnp.int32)) for k in MODEL_FEATURES}
    return self.module.init({"params": rng}, *self._args(batch), deterministic=True)

  def init(self, rng: jax.Array, batch: Batch) -> Dict[str, Any]:
    """Unboxed params {'encoder': ..., 'head': ...} for a batch's shapes."""
    shapes = {k: tuple(batch[k].shape) for k in MODEL_FEATURES}
    init = jax.jit(lambda key: nn.meta.unbox(self.get_initial_variables(key, shapes)["params"]))
    return init(rng)

  @staticmethod
  def _args(batch: Batch):
    for k in MODEL_FEATURES:
      if k not in batch:
        raise ValueError(f"Seq2SeqModel: the batch lacks '{k}' (has {sorted(batch)}); build it "
                         "with the SLAM feature converter from a seq2seq task (tasks/st.py)")
    return batch[types.SPEECH_FEATURES], batch[types.SPEECH_MASK], batch[TARGET_TOKENS]

  # ------------------------------------------------------------------------- training
  def loss_fn(self, params, batch: Batch, dropout_rng: Optional[jax.Array] = None,
              step=0) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
    """Mean label-smoothed cross-entropy per target token (EOS included).

    Returns:
      (loss, metrics {loss, nll, accuracy, tokens}); dropout_rng None = no dropout.
    """
    del step
    deterministic = dropout_rng is None
    rngs = None if deterministic else {"dropout": dropout_rng}
    logits = self.module.apply({"params": params}, *self._args(batch),
                               deterministic=deterministic, rngs=rngs)
    targets = batch[TARGET_TOKENS]
    weights = (targets > 0).astype(jnp.float32)
    if VALID in batch:
      weights = weights * jnp.asarray(batch[VALID]).astype(jnp.float32).reshape(-1, 1)
    total, count, metrics = cross_entropy.label_smoothed_cross_entropy(
        logits, targets, weights, self.label_smoothing)
    return total / jnp.maximum(count, 1.0), metrics

  def eval_fn(self, params, batch: Batch, step=0):
    return self.loss_fn(params, batch, None, step)

  # ------------------------------------------------------------------------- inference
  def predict(self, params, batch: Batch,
              decode_config: Optional[decoding.DecodeConfig] = None) -> Dict[str, jnp.ndarray]:
    """{'tokens': int32 [B, L]} decoded outputs (L = the batch's target length)."""
    config = decode_config or self.decode_config
    length = batch[TARGET_TOKENS].shape[1]
    return {"tokens": self._decode_fn(config, length)(params, batch[types.SPEECH_FEATURES],
                                                      batch[types.SPEECH_MASK])}

  @functools.lru_cache(maxsize=8)
  def _decode_fn(self, config: decoding.DecodeConfig, length: int):
    module = self.module

    def run(params, speech_features, speech_mask):
      variables = {"params": params}
      cache, source_lengths = module.apply(variables, speech_features, speech_mask, length,
                                           method=SpeechSeq2Seq.init_cache)

      def step_fn(tokens, step, cache):
        return module.apply(variables, tokens, step, cache, method=SpeechSeq2Seq.decode_step)

      max_lengths = decoding.max_decode_lengths(source_lengths, config.max_len_a,
                                                config.max_len_b, length)
      return decoding.decode(step_fn, cache, max_lengths, length, config)

    return jax.jit(run)

  def postprocess(self, predictions: Mapping[str, Any], batch: Optional[Batch] = None
                  ) -> List[str]:
    """Detokenized strings, one per row (tokens up to the first EOS)."""
    del batch
    out = []
    for row in np.asarray(predictions["tokens"]):
      ids = []
      for t in row.tolist():
        if t == self.decode_config.eos_id:
          break
        if t != 0:
          ids.append(int(t))
      vocabulary = self.vocabulary() if callable(self.vocabulary) else self.vocabulary
      out.append(vocabulary.decode(ids) if vocabulary is not None else " ".join(map(str, ids)))
    return out

  def targets(self, batch: Batch) -> List[str]:
    """The batch's references, detokenized like `postprocess`."""
    return self.postprocess({"tokens": np.asarray(batch[TARGET_TOKENS])})

  def check_batch(self, batch: Batch) -> None:
    """Raises ValueError for a row without a target (an empty translation or transcript)."""
    targets = np.asarray(batch[TARGET_TOKENS])
    valid = np.asarray(batch.get(VALID, np.ones(targets.shape[0]))).reshape(-1) > 0
    empty = np.flatnonzero(valid & ~np.any(targets > 1, axis=1))
    if empty.size:
      raise ValueError(f"Seq2SeqModel: rows {empty.tolist()} have an empty target (only EOS or "
                       "padding): drop empty translations/transcripts in the task "
                       "(FilterConfig.empty_text='drop')")


def task_vocabulary(mixture_or_task_name: str):
  """The target vocabulary of a seqio task: its 'text' output feature's (resolved lazily)."""
  import seqio  # pylint: disable=g-import-not-at-top
  return seqio.get_mixture_or_task(mixture_or_task_name).output_features[types.TASK_TEXT].vocabulary


@gin.configurable(module="slam_jax.finetune.seq2seq")
def make_seq2seq_model(encoder_config: encoder_lib.EncoderConfig = gin.REQUIRED,
                       decoder_config: decoder_lib.DecoderConfig = gin.REQUIRED,
                       mixture_or_task_name: Optional[str] = None,
                       decode_config: decoding.DecodeConfig = decoding.DecodeConfig(),
                       label_smoothing: float = 0.1) -> Seq2SeqModel:
  """Gin entry point of the seq2seq (ST / attention-ASR) model.

  Args:
    encoder_config: must match the pre-trained checkpoint's encoder.
    decoder_config: its vocab_size must cover the task's target vocabulary.
    mixture_or_task_name: the task whose 'text' vocabulary detokenizes outputs (None: ids).
    decode_config: beam size, length penalty, max length (gin: DecodeConfig).
    label_smoothing: of the training loss (0.1 as in fairseq's S2T recipes).
  """
  vocabulary = None
  if mixture_or_task_name:
    vocabulary = functools.partial(task_vocabulary, mixture_or_task_name)
  return Seq2SeqModel(encoder_config, decoder_config, decode_config, label_smoothing, vocabulary)
