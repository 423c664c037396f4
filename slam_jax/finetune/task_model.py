"""DownstreamModel: the interface between the fine-tuning loop / evaluator and a downstream model.

A downstream model is the pre-trained encoder (params under `encoder_param_key`, restored by
`restore.restore_encoder_params`) plus a fresh head (params under 'head'):

  init(rng, batch) -> params                    {'encoder': ..., 'head': ...} (flax boxes allowed)
  loss_fn(params, batch, rng, step) -> (loss, metrics)   rng None = deterministic (no dropout)
  predict(params, batch) -> {name: array [B, ...]}       jittable
  postprocess(predictions, batch) -> [python output per row]   host side (strings, labels)
  targets(batch) -> [python target per row]     what the task's seqio metric_fns compare with
  check_batch(host_batch)                       raises ValueError on bad input (host side)

Batches are the model batches of `slam_jax.data.converters` (slam_jax/types.py) plus any
`extra_features` (e.g. 'label'); `valid_rows(batch)` says which rows are real (evaluation pads
the last batch with copies marked invalid).

The class also offers the methods `trainer.PartitionedTrainer` calls (`get_initial_variables`,
`loss_fn(..., step=)`, `input_shapes_and_types`, `compute_dtype`), so the pre-training trainer's
sharded init, jitted step and checkpoints serve fine-tuning unchanged.
"""

import abc
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import types
from slam_jax.models import encoder as encoder_lib

Batch = Mapping[str, Any]
Metrics = Dict[str, jnp.ndarray]
FEATURE_LAYERS = ("features", "speech", "shared")
VALID = "valid"  # optional bool/int [B]: 0 marks padding rows added by the evaluator


class DownstreamModel(abc.ABC):
  """Base class of downstream models (see the module docstring for the contract).

  Attributes:
    encoder_config: the encoder architecture (must match the pre-trained checkpoint).
    encoder_param_key: top-level params key holding the encoder (restored from pre-training).
    extra_features: {name: (shape after the batch dim, dtype)} the model reads besides the
      SLAM model features.
  """

  encoder_param_key = "encoder"
  extra_features: Dict[str, Tuple[Tuple[int, ...], Any]] = {}

  def __init__(self, encoder_config: encoder_lib.EncoderConfig):
    self.encoder_config = encoder_config

  # ---------------------------------------------------------------- the interface
  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: Batch) -> Dict[str, Any]:
    """Fresh params {'encoder': ..., 'head': ...} for a batch of these shapes."""

  @abc.abstractmethod
  def loss_fn(self, params, batch: Batch, rng: Optional[jax.Array],
              step=0) -> Tuple[jnp.ndarray, Metrics]:
    """(scalar loss, scalar metrics); rng None = evaluation (no dropout, no input masking)."""

  @abc.abstractmethod
  def predict(self, params, batch: Batch) -> Dict[str, jnp.ndarray]:
    """Per-row prediction arrays (jittable)."""

  @abc.abstractmethod
  def postprocess(self, predictions: Mapping[str, np.ndarray], batch: Batch) -> List[Any]:
    """Python outputs, one per row of the batch (padding rows included)."""

  def targets(self, batch: Batch) -> List[Any]:
    """Python targets, one per row, in the form `postprocess` returns (what the task's
    metric_fns compare predictions with; `slam_jax.evaluate` needs it)."""
    raise NotImplementedError(f"{type(self).__name__}.targets(batch) is needed to evaluate: "
                              "return one python target per row (e.g. the transcript string)")

  def check_batch(self, batch: Batch) -> None:
    """Raises ValueError naming the bad row/feature; default: nothing to check."""

  # ---------------------------------------------------------------- PartitionedTrainer adapter
  @property
  def compute_dtype(self):
    return self.encoder_config.compute_dtype

  def input_shapes_and_types(self, batch_size: int, feature_lengths: Mapping[str, int]):
    """Model-batch shapes/dtypes for {"speech": frames, "text": tokens} (+ extra_features)."""
    shapes, dtypes = types.model_batch_spec(batch_size, feature_lengths,
                                            self.encoder_config.num_mel_bins)
    for name, (shape, dtype) in self.extra_features.items():
      shapes[name] = (batch_size,) + tuple(shape)
      dtypes[name] = dtype
    return shapes, dtypes

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    input_types = dict(input_types or {})
    batch = {k: jnp.zeros(s, input_types.get(k, jnp.float32)) for k, s in input_shapes.items()}
    return {"params": self.init(rng, batch)}

  # ---------------------------------------------------------------- helpers for subclasses
  @staticmethod
  def valid_rows(batch: Batch) -> jnp.ndarray:
    """float [B]: 1 for real rows, 0 for the evaluator's padding rows."""
    n = batch[types.KIND].shape[0]
    if VALID in batch:
      return jnp.asarray(batch[VALID]).astype(jnp.float32).reshape(n)
    return jnp.ones((n,), jnp.float32)


def speech_only_args(batch: Batch):
  """SlamEncoder arguments for the speech slot alone (a one-token empty text slot)."""
  n = batch[types.SPEECH_MASK].shape[0]
  empty = jnp.zeros((n, 1), jnp.int32)
  return (batch[types.SPEECH_FEATURES], batch[types.SPEECH_MASK], empty, empty, empty)


def text_only_args(batch: Batch, num_mel_bins: int):
  """SlamEncoder arguments for the text slot alone (an 8-frame empty speech slot)."""
  n = batch[types.TEXT_TOKENS].shape[0]
  return (jnp.zeros((n, 8, num_mel_bins), jnp.float32), jnp.zeros((n, 8), jnp.int32),
          batch[types.TEXT_TOKENS], batch[types.TEXT_SEGMENT_IDS], batch[types.TEXT_POSITIONS])


def speech_layer(outputs: encoder_lib.EncoderOutputs, layer: str) -> jnp.ndarray:
  """[B, T', D] speech representation from `layer` in FEATURE_LAYERS:
  'features' (feature encoder), 'speech' (speech-only stack), 'shared' (shared stack)."""
  if layer == "features":
    return outputs.features
  if layer == "speech":
    return outputs.speech_hidden
  if layer == "shared":
    return outputs.shared_speech
  raise ValueError(f"feature_layer={layer!r}: use one of {FEATURE_LAYERS}")


def check_feature_layer(layer: str) -> str:
  if layer not in FEATURE_LAYERS:
    raise ValueError(f"feature_layer={layer!r}: use one of {FEATURE_LAYERS}")
  return layer
