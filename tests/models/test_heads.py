"""Objective heads: shapes, tied text head, STM pooling ignores padding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.models import heads


def test_head_shapes():
  x = jnp.ones((2, 3, 8))
  for module, shape in ((heads.ContrastiveProjection(5), (2, 3, 5)),
                        (heads.SpeechMlmHead(2, 7), (2, 3, 2, 7)),
                        (heads.TextMlmHead(11), (2, 3, 11))):
    variables = module.init(jax.random.key(0), x)
    y = module.apply(variables, x)
    assert y.shape == shape and y.dtype == jnp.float32


def test_tied_text_head_uses_the_given_projection():
  table = jax.random.normal(jax.random.key(1), (11, 8))
  attend = lambda h: jnp.einsum("...d,vd->...v", h, table)
  head = heads.TextMlmHead(11)
  x = jax.random.normal(jax.random.key(2), (2, 3, 8))
  variables = head.init(jax.random.key(0), x, attend)
  assert "output" not in nn.unbox(variables["params"])
  logits = head.apply(variables, x, attend)
  assert logits.shape == (2, 3, 11)


def test_stm_head_ignores_padding():
  head = heads.StmHead()
  speech = jax.random.normal(jax.random.key(0), (2, 4, 8))
  text = jax.random.normal(jax.random.key(1), (2, 3, 8))
  speech_valid = jnp.asarray([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
  text_valid = jnp.asarray([[1, 0, 0], [1, 1, 0]], bool)
  variables = head.init(jax.random.key(0), speech, speech_valid, text, text_valid)
  logits = head.apply(variables, speech, speech_valid, text, text_valid)
  changed = head.apply(variables, speech.at[0, 3].set(100.0), speech_valid,
                       text.at[0, 2].set(-50.0), text_valid)
  assert logits.shape == (2,)
  np.testing.assert_allclose(logits, changed, rtol=1e-6)
