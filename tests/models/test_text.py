"""Text embedder: shapes, padding, packing, tied output projection."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.models import text as text_lib

V, D = 20, 8


def _setup():
  emb = text_lib.TextEmbedder(vocab_size=V, model_dim=D)
  tokens = jnp.asarray([[3, 4, 5, 6, 7, 0], [3, 4, 5, 9, 9, 9]], jnp.int32)
  seg = jnp.asarray([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]], jnp.int32)
  pos = jnp.asarray([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]], jnp.int32)
  params = emb.init(jax.random.PRNGKey(0), tokens, pos, seg)
  return emb, params, tokens, seg, pos


def test_embedding_param_axes_and_shape():
  _, params, *_ = _setup()
  table = params["params"]["embedding"]
  assert isinstance(table, nn.Partitioned)
  assert table.names == ("vocab", "embed") and table.value.shape == (V, D)


def test_packing_and_padding():
  emb, params, tokens, seg, pos = _setup()
  out = np.asarray(emb.apply(params, tokens, pos, seg))
  assert out.shape == (2, 6, D)
  assert np.all(out[0, 5] == 0.0)  # padding
  # Position-wise: a packed segment equals the same tokens at the same positions elsewhere.
  np.testing.assert_allclose(out[0, :3], out[1, :3], rtol=1e-6)
  alone = np.asarray(emb.apply(params, jnp.asarray([[6, 7]]), jnp.asarray([[0, 1]]),
                               jnp.asarray([[1, 1]])))
  np.testing.assert_allclose(out[0, 3:5], alone[0], rtol=1e-6)


def test_attend_is_tied_to_embedding():
  emb, params, *_ = _setup()
  x = jnp.ones((2, 3, D), jnp.float32)
  logits = emb.apply(params, x, method=text_lib.TextEmbedder.attend)
  assert logits.shape == (2, 3, V) and logits.dtype == jnp.float32
  table = np.asarray(nn.unbox(params)["params"]["embedding"])
  np.testing.assert_allclose(np.asarray(logits)[0, 0], table.sum(-1), rtol=1e-5)
