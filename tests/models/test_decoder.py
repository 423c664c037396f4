"""TransformerDecoder: incremental decoding equals teacher forcing; causality; memory masking."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.models import decoder as decoder_lib

CONFIG = decoder_lib.DecoderConfig(vocab_size=11, model_dim=16, num_heads=2, ffn_dim=32,
                                   num_layers=2, dropout_rate=0.0)


def _setup(seed=0, batch=2, length=5, mem=7, width=12):
  rng = np.random.default_rng(seed)
  targets = jnp.asarray(rng.integers(2, CONFIG.vocab_size, size=(batch, length)), jnp.int32)
  memory = jnp.asarray(rng.normal(size=(batch, mem, width)), jnp.float32)
  valid = jnp.asarray(np.arange(mem)[None, :] < np.array([[mem], [mem - 3]]))
  module = decoder_lib.TransformerDecoder(CONFIG)
  params = module.init(jax.random.PRNGKey(seed), targets, memory, valid)["params"]
  return module, params, targets, memory, valid


def test_decode_step_matches_teacher_forcing():
  module, params, targets, memory, valid = _setup()
  inputs = decoder_lib.shift_right(targets)
  full = module.apply({"params": params}, inputs, memory, valid)
  cache = module.apply({"params": params}, memory, valid, targets.shape[1],
                       method=decoder_lib.TransformerDecoder.init_cache)
  step = jax.jit(lambda tokens, i, cache: module.apply(
      {"params": params}, tokens, i, cache, method=decoder_lib.TransformerDecoder.decode_step))
  for i in range(targets.shape[1]):
    logits, cache = step(inputs[:, i], jnp.int32(i), cache)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(full[:, i]), atol=1e-5)


def test_causal_and_memory_padding_ignored():
  module, params, targets, memory, valid = _setup()
  inputs = decoder_lib.shift_right(targets)
  base = module.apply({"params": params}, inputs, memory, valid)
  # Changing a later input token leaves earlier positions unchanged.
  changed = module.apply({"params": params}, inputs.at[:, 3].set(1), memory, valid)
  np.testing.assert_allclose(np.asarray(changed[:, :3]), np.asarray(base[:, :3]), atol=1e-6)
  assert not np.allclose(np.asarray(changed[:, 3]), np.asarray(base[:, 3]))
  # Garbage in row 1's padded memory does not matter.
  noisy = memory.at[1, -3:].set(100.0)
  again = module.apply({"params": params}, inputs, noisy, valid)
  np.testing.assert_allclose(np.asarray(again), np.asarray(base), atol=1e-5)


def test_config_errors_and_presets():
  with pytest.raises(ValueError, match="divisible by num_heads"):
    decoder_lib.DecoderConfig(vocab_size=8, model_dim=10, num_heads=3)
  paper = decoder_lib.make_decoder_config(vocab_size=100)
  assert (paper.num_layers, paper.model_dim) == (4, 384)
  with pytest.raises(ValueError, match="preset"):
    decoder_lib.make_decoder_config(vocab_size=100, preset="huge")
