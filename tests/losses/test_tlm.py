"""TLM = text masked prediction + speech masked prediction on matched paired rows."""

import jax.numpy as jnp
import numpy as np

from slam_jax.losses import mlm, tlm


def test_tlm_is_sum_of_text_and_speech_means():
  rng = np.random.default_rng(0)
  text_logits = jnp.asarray(rng.standard_normal((2, 4, 9)), jnp.float32)
  text_targets = jnp.asarray(rng.integers(0, 9, (2, 4)), jnp.int32)
  text_mask = jnp.asarray([[1, 1, 0, 0], [0, 0, 0, 1]], bool)
  speech_logits = jnp.asarray(rng.standard_normal((2, 3, 2, 5)), jnp.float32)
  ids = jnp.asarray(rng.integers(0, 5, (2, 3, 2)), jnp.int32)
  speech_mask = jnp.asarray([[1, 0, 1], [0, 0, 0]], bool)
  loss, metrics = tlm.tlm_loss(text_logits, text_targets, text_mask, speech_logits, ids,
                               speech_mask)
  t, _ = mlm.text_mlm_loss(text_logits, text_targets, text_mask)
  s, _ = mlm.speech_mlm_loss(speech_logits, ids, speech_mask)
  np.testing.assert_allclose(loss, t + s, rtol=1e-6)
  assert float(metrics["text_count"]) == 3 and float(metrics["speech_count"]) == 2
  # No paired positions at all: exactly zero.
  zero, _ = tlm.tlm_loss(text_logits, text_targets, text_mask & False, speech_logits, ids,
                         speech_mask & False)
  assert float(zero) == 0.0
