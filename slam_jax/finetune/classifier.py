"""Sequence classification on the SLAM encoder (GLUE-style text tasks, the demo's label).

  text --SlamEncoder (text slot only)--> shared_text [B, L, D]
       --masked mean over valid tokens--> dense + tanh --dropout--> dense --> logits [B, C]
  loss = softmax cross-entropy against the batch's 'label' (int32 [B]).

There is no [CLS] position in SLAM's inputs, so the head pools like the STM head does.
"""

from typing import Optional, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from slam_jax import types
from slam_jax.finetune import task_model
from slam_jax.models import encoder as encoder_lib
from slam_jax.models import layers as layers_lib

LABEL = "label"


class ClassifierHead(nn.Module):
  num_classes: int
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pooled, deterministic=True):
    d = pooled.shape[-1]
    h = jnp.tanh(layers_lib.dense(d, ("embed", "mlp"), dtype=self.dtype, name="pooler")(pooled))
    h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
    return layers_lib.dense(self.num_classes, ("mlp", None), dtype=self.dtype,
                            name="logits")(h).astype(jnp.float32)


class ClassifierNet(nn.Module):
  """Encoder + pooled head. Params: encoder, head."""

  encoder_config: encoder_lib.EncoderConfig
  num_classes: int
  head_dropout: float = 0.0

  def setup(self):
    self.encoder = encoder_lib.SlamEncoder(self.encoder_config)
    self.head = ClassifierHead(self.num_classes, self.head_dropout,
                               self.encoder_config.compute_dtype)

  def __call__(self, tokens, segment_ids, positions, deterministic=True):
    batch = {types.TEXT_TOKENS: tokens, types.TEXT_SEGMENT_IDS: segment_ids,
             types.TEXT_POSITIONS: positions}
    out = self.encoder(*task_model.text_only_args(batch, self.encoder_config.num_mel_bins),
                       deterministic=deterministic)
    w = out.text_valid.astype(jnp.float32)
    pooled = jnp.einsum("bld,bl->bd", out.shared_text.astype(jnp.float32), w) / jnp.maximum(
        jnp.sum(w, axis=1), 1.0)[:, None]
    return self.head(pooled, deterministic=deterministic)


class ClassifierModel(task_model.DownstreamModel):
  """Text classifier.

  Args:
    encoder_config: encoder architecture (as pre-trained).
    class_names: label names; label i of the data is class_names[i].
    head_dropout: dropout inside the head.
  """

  extra_features = {LABEL: ((), jnp.int32)}

  def __init__(self, encoder_config: encoder_lib.EncoderConfig, class_names: Sequence[str],
               head_dropout: float = 0.1):
    super().__init__(encoder_config)
    if len(class_names) < 2:
      raise ValueError(f"ClassifierModel needs at least 2 classes, got {list(class_names)}")
    self.class_names = tuple(class_names)
    self.net = ClassifierNet(encoder_config, len(self.class_names), head_dropout)

  def _apply(self, params, batch, rng):
    rngs = None if rng is None else {"dropout": rng}
    return self.net.apply({"params": params}, batch[types.TEXT_TOKENS],
                          batch[types.TEXT_SEGMENT_IDS], batch[types.TEXT_POSITIONS],
                          deterministic=rng is None, rngs=rngs)

  def init(self, rng, batch):
    return self.net.init({"params": rng}, batch[types.TEXT_TOKENS],
                         batch[types.TEXT_SEGMENT_IDS], batch[types.TEXT_POSITIONS])["params"]

  def loss_fn(self, params, batch, rng, step=0):
    del step
    logits = self._apply(params, batch, rng)
    labels = batch[LABEL].astype(jnp.int32)
    rows = self.valid_rows(batch)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    n = jnp.maximum(jnp.sum(rows), 1.0)
    loss = jnp.sum(losses * rows) / n
    acc = jnp.sum((jnp.argmax(logits, -1) == labels) * rows) / n
    return loss, {"classifier/loss": loss, "classifier/accuracy": acc}

  def predict(self, params, batch):
    logits = self._apply(params, batch, None)
    return {"label": jnp.argmax(logits, -1).astype(jnp.int32), "logits": logits}

  def postprocess(self, predictions, batch):
    return [self.class_names[int(i)] for i in np.asarray(predictions["label"])]

  def targets(self, batch):
    return [self.class_names[int(i)] for i in np.asarray(batch[LABEL])]

  def check_batch(self, batch):
    if LABEL not in batch:
      raise ValueError(f"Classifier batch has no '{LABEL}' feature (features: {sorted(batch)}); "
                       "use a classification task (tasks/classification.py)")
    labels = np.asarray(batch[LABEL])
    rows = np.asarray(self.valid_rows(batch)) > 0
    bad = np.nonzero(((labels < 0) | (labels >= len(self.class_names))) & rows)[0]
    if bad.size:
      raise ValueError(f"Labels {labels[bad][:5].tolist()} (rows {bad[:5].tolist()}) are outside "
                       f"the task's {len(self.class_names)} classes {list(self.class_names)}: "
                       "fix the task's label mapping or ClassifierModel.class_names")
    empty = np.nonzero((np.sum(np.asarray(batch[types.TEXT_SEGMENT_IDS]) > 0, axis=1) == 0)
                       & rows)[0]
    if empty.size:
      raise ValueError(f"Classifier batch rows {empty[:5].tolist()} have no text tokens")


@gin.configurable(module="slam_jax.finetune")
def make_classifier_model(mixture_or_task_name: str = gin.REQUIRED,
                          encoder_config: Optional[encoder_lib.EncoderConfig] = None,
                          head_dropout: float = 0.1) -> ClassifierModel:
  """Gin entry point: a ClassifierModel whose classes are the task's label vocabulary's
  `class_names` (tasks/downstream.py)."""
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(mixture_or_task_name)
  label = task.output_features.get(LABEL)
  names = getattr(getattr(label, "vocabulary", None), "class_names", None)
  if not names:
    raise ValueError(f"Task {mixture_or_task_name!r} has no '{LABEL}' feature with class names; "
                     "register it with tasks.downstream.register_classification_task")
  return ClassifierModel(encoder_config or encoder_lib.make_encoder_config(), names,
                         head_dropout=head_dropout)
