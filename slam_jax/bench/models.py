"""What `slam_jax.bench` trains: the Conformer stack alone ('encoder' mode) and generated batches.

`StackModel` has the trainer's model interface (`get_initial_variables`, `loss_fn`,
`input_shapes_and_types`, `compute_dtype`), so both benchmark modes run through the same
`PartitionedTrainer` (jit with explicit shardings, donated state, AdamW + clipping + NaN guard) as
real training.
"""

from typing import Any, Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import types
from slam_jax.data import synthetic
from slam_jax.models import conformer as conformer_lib

FRAMES = "frames"
# One Conformer frame is 4 log-mel frames of 10 ms (the feature encoder's 4x subsampling).
STACK_FRAME_SECONDS = 0.04
MEL_FRAME_SECONDS = 0.01


class StackModel:
  """The Conformer stack on [batch, frames, model_dim] inputs; loss = mean of squared outputs.

  Every frame is valid and position ids are the array indices, as in the speech-only stack.
  Dropout follows `config.dropout_rate` (pass rng=None for none).
  """

  def __init__(self, config, num_layers: int):
    self.config = config
    self.num_layers = num_layers
    self.module = conformer_lib.ConformerStack(config, num_layers)

  @property
  def compute_dtype(self):
    return self.config.compute_dtype

  def input_shapes_and_types(self, batch_size: int, frames: int
                             ) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, Any]]:
    return {FRAMES: (batch_size, frames, self.config.model_dim)}, {FRAMES: jnp.float32}

  def get_initial_variables(self, rng, input_shapes: Mapping[str, Tuple[int, ...]],
                            input_types=None) -> Dict[str, Any]:
    del input_types
    b, t, d = input_shapes[FRAMES]
    return self.module.init({"params": rng}, jnp.zeros((b, t, d), jnp.float32),
                            jnp.ones((b, t), jnp.int32), _positions(b, t))

  def loss_fn(self, params, batch, dropout_rng, step=0):
    del step
    x = batch[FRAMES]
    segments = jnp.ones(x.shape[:2], jnp.int32)
    cfg = self.config
    deterministic = dropout_rng is None or (cfg.dropout_rate == 0.0 and
                                            cfg.attention_dropout_rate == 0.0)
    rngs = None if deterministic else {"dropout": dropout_rng}
    y = self.module.apply({"params": params}, x, segments, _positions(*x.shape[:2]),
                          deterministic=deterministic, rngs=rngs)
    loss = jnp.mean(jnp.square(y.astype(jnp.float32)))
    return loss, {}


def _positions(batch: int, frames: int) -> jnp.ndarray:
  return jnp.broadcast_to(jnp.arange(frames, dtype=jnp.int32)[None, :], (batch, frames))


def stack_batch(seed: int, batch_size: int, frames: int, model_dim: int) -> Dict[str, np.ndarray]:
  """Random [batch, frames, model_dim] frames."""
  rng = np.random.default_rng(seed)
  return {FRAMES: rng.standard_normal((batch_size, frames, model_dim)).astype(np.float32)}


def pretrain_batch(seed: int, batch_size: int, frames: int, text_length: int, vocab_size: int,
                   rows: str = "mixed") -> Dict[str, np.ndarray]:
  """A model batch for the pre-training step.

  Args:
    rows: 'mixed' = `slam_jax.data.synthetic` rows (text, speech, paired in turn, varied lengths);
      'speech' = every row a full-length speech row (w2v-BERT only; what the peer is fed).
  """
  rng = np.random.default_rng(seed)
  if rows == "mixed":
    batch = synthetic.synthetic_batch(rng, batch_size, frames, text_length, vocab_size)
    # The generated features are float64 (float32 x int mask in numpy); the model takes float32.
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in batch.items()}
  if rows != "speech":
    raise ValueError(f"BenchConfig.rows={rows!r}: use 'mixed' or 'speech'")
  return {
      types.SPEECH_FEATURES: rng.standard_normal(
          (batch_size, frames, types.NUM_MEL_BINS)).astype(np.float32),
      types.SPEECH_MASK: np.ones((batch_size, frames), np.int32),
      types.TEXT_TOKENS: np.zeros((batch_size, text_length), np.int32),
      types.TEXT_SEGMENT_IDS: np.zeros((batch_size, text_length), np.int32),
      types.TEXT_POSITIONS: np.zeros((batch_size, text_length), np.int32),
      types.KIND: np.full((batch_size,), types.KIND_SPEECH, np.int32),
  }


def batch_counts(batch: Mapping[str, np.ndarray]) -> Dict[str, float]:
  """Examples, audio seconds and text tokens in one batch (what the rates are computed from)."""
  if FRAMES in batch:
    b, t = batch[FRAMES].shape[:2]
    return {"examples": float(b), "audio_seconds": b * t * STACK_FRAME_SECONDS,
            "text_tokens": 0.0}
  return {"examples": float(batch[types.SPEECH_MASK].shape[0]),
          "audio_seconds": float(np.sum(batch[types.SPEECH_MASK])) * MEL_FRAME_SECONDS,
          "text_tokens": float(np.sum(batch[types.TEXT_SEGMENT_IDS] > 0))}


def abstract_params_count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
