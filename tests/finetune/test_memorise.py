"""A tiny CTC fine-tune memorises a handful of utterances (the loss, decoding and optimizer
work together); freezing keeps the encoder fixed."""
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import partitioning
from slam_jax import trainer as trainer_lib
from slam_jax import types
from slam_jax.finetune import ctc
from slam_jax.finetune import train as finetune_lib
from slam_jax.models import encoder as encoder_lib


class _Vocab:
  vocab_size = 8

  def decode(self, ids):
    return " ".join(map(str, ids))


def _batch(rng):
  n, frames, length = 4, 40, 6
  labels = np.array([[2, 3, 4, 1, 0, 0], [5, 6, 1, 0, 0, 0], [7, 2, 5, 3, 1, 0],
                     [4, 4, 6, 1, 0, 0]], np.int32)  # EOS = 1 ends each transcript
  return {
      types.SPEECH_FEATURES: rng.normal(size=(n, frames, 80)).astype(np.float32),
      types.SPEECH_MASK: np.ones((n, frames), np.int32),
      types.TEXT_TOKENS: labels,
      types.TEXT_SEGMENT_IDS: (labels > 0).astype(np.int32),
      types.TEXT_POSITIONS: np.tile(np.arange(length, dtype=np.int32), (n, 1)),
      types.KIND: np.full((n,), types.KIND_PAIRED, np.int32),
  }


def test_tiny_ctc_finetune_memorises_utterances():
  config = encoder_lib.get_preset("tiny", dropout_rate=0.0)
  model = ctc.CtcAsrModel(config, _Vocab())
  batch = _batch(np.random.default_rng(0))
  steps = 120
  tx, _ = finetune_lib.make_finetune_optimizer(finetune_lib.FinetuneOptimizerConfig(
      encoder_learning_rate=1e-2, head_learning_rate=1e-2, warmup_steps=5, decay="constant",
      freeze_encoder_steps=0, weight_decay=0.0), steps)
  params = partitioning.unbox(model.init(jax.random.PRNGKey(0), batch))
  state = trainer_lib.init_train_state(params, tx)
  step = jax.jit(trainer_lib.make_train_step(lambda p, b, r, s: model.loss_fn(p, b, r, s), tx, 0))
  first = None
  for _ in range(steps):
    state, metrics = step(state, batch)
    first = float(metrics["loss"]) if first is None else first
  assert float(metrics["loss"]) < 0.1 * first
  decoded = model.decode_ids(jax.device_get(jax.jit(model.predict)(state.params, batch)))
  assert decoded == [[2, 3, 4], [5, 6], [7, 2, 5, 3], [4, 4, 6]]


def test_freeze_keeps_encoder_and_trains_head():
  tx, schedules = finetune_lib.make_finetune_optimizer(finetune_lib.FinetuneOptimizerConfig(
      encoder_learning_rate=1e-2, head_learning_rate=1e-2, warmup_steps=1,
      freeze_encoder_steps=3, decay="constant"), 10)
  params = {"encoder": {"w": jnp.ones((2, 2))}, "head": {"w": jnp.ones((2, 2))}}
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  opt_state = tx.init(params)
  for _ in range(3):
    updates, opt_state = tx.update(grads, opt_state, params)
    assert float(jnp.abs(updates["encoder"]["w"]).max()) == 0.0
    assert float(jnp.abs(updates["head"]["w"]).max()) > 0.0
  updates, opt_state = tx.update(grads, opt_state, params)
  assert float(jnp.abs(updates["encoder"]["w"]).max()) > 0.0
  assert float(schedules["encoder"](2)) == 0.0 and float(schedules["encoder"](3)) > 0.0
