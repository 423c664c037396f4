"""Seq2SeqModel: a tiny ST model memorises a few utterances; padding never changes a decode;
the param tree matches the pre-training encoder's."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from slam_jax import decoding
from slam_jax import types
from slam_jax.finetune import seq2seq
from slam_jax.models import config as config_lib
from slam_jax.models import decoder as decoder_lib

ENCODER = config_lib.get_preset("tiny", dropout_rate=0.0, num_mel_bins=8)
DECODER = decoder_lib.make_decoder_config(vocab_size=12, preset="tiny", dropout_rate=0.0)


def _batch(rng, lengths, frames, target_len=6):
  n = len(lengths)
  feats = rng.normal(size=(n, frames, ENCODER.num_mel_bins)).astype(np.float32)
  mask = (np.arange(frames)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
  feats *= mask[..., None]
  targets = np.zeros((n, target_len), np.int32)
  for i in range(n):
    k = 2 + i % 3
    targets[i, :k] = rng.integers(2, DECODER.vocab_size, size=k)
    targets[i, k] = 1  # EOS
  return {types.SPEECH_FEATURES: jnp.asarray(feats), types.SPEECH_MASK: jnp.asarray(mask),
          types.TEXT_TOKENS: jnp.asarray(targets)}


@pytest.fixture(scope="module")
def trained():
  """A tiny model trained to memorise 4 utterances (and its batch)."""
  model = seq2seq.Seq2SeqModel(ENCODER, DECODER, decoding.DecodeConfig(beam_size=1),
                               label_smoothing=0.0)
  batch = _batch(np.random.default_rng(0), [24, 19, 12, 22], 24)
  params = model.init(jax.random.PRNGKey(0), batch)
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(params, batch)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  losses = []
  for _ in range(100):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  return model, params, batch, losses


@pytest.mark.slow
def test_param_tree_has_encoder_and_head(trained):
  model, params, _, _ = trained
  assert set(params) == {"encoder", "head"}
  assert model.encoder_param_key == "encoder"
  assert {"feature_encoder", "shared_stack", "speech_stack"} <= set(params["encoder"])
  assert "layer_0" in params["head"] and "embedding" in params["head"]


@pytest.mark.slow
def test_tiny_model_memorises_utterances(trained):
  model, params, batch, losses = trained
  assert losses[-1] < 0.05 * losses[0], losses[::25]
  for config in (decoding.DecodeConfig(beam_size=1), decoding.DecodeConfig(beam_size=3)):
    tokens = model.predict(params, batch, config)["tokens"]
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(batch[seq2seq.TARGET_TOKENS]))
  assert model.targets(batch)[0] == " ".join(
      str(t) for t in np.asarray(batch[types.TEXT_TOKENS])[0] if t > 1)
  model.check_batch(batch)
  with pytest.raises(ValueError, match=r"rows \[1\] have an empty target"):
    model.check_batch(dict(batch, text_tokens=batch[types.TEXT_TOKENS].at[1].set(0)))


@pytest.mark.slow
def test_padding_never_changes_a_hypothesis(trained):
  model, params, batch, _ = trained
  config = decoding.DecodeConfig(beam_size=3, length_penalty=0.6)
  # Row 2 (12 frames) decoded alone, trimmed to its own length, and inside the padded batch
  # of 24 frames; params slightly perturbed so outputs are not just the memorised targets.
  noisy = jax.tree_util.tree_map(
      lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
  together = np.asarray(model.predict(noisy, batch, config)["tokens"])
  alone = {k: v[2:3, :12] if k != seq2seq.TARGET_TOKENS else v[2:3] for k, v in batch.items()}
  np.testing.assert_array_equal(np.asarray(model.predict(noisy, alone, config)["tokens"])[0],
                                together[2])
