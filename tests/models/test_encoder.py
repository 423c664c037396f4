"""SlamEncoder: outputs, padding invariance, empty sides, bf16 (its config: test_config.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.models import encoder as encoder_lib

F = 80


# ---- model -------------------------------------------------------------------------------------

def _batch(frames=(13, 0, 13), texts=((), (3, 4, 5, 6, 7), (8, 9)), t_pad=13, l_pad=6, seed=0,
           packed=None, garbage=True):
  """Rows with given utterance lengths / token lists, padded to (t_pad, l_pad) with garbage."""
  rng = np.random.RandomState(seed)
  b = len(frames)
  speech = (100.0 * rng.randn(b, t_pad, F) if garbage else np.zeros((b, t_pad, F))).astype(
      np.float32)
  base = np.random.RandomState(1234).randn(b, max(frames + (1,)), F).astype(np.float32)
  mask = np.zeros((b, t_pad), np.int32)
  tokens = rng.randint(1, 100, (b, l_pad)).astype(np.int32) if garbage else np.zeros(
      (b, l_pad), np.int32)
  seg = np.zeros((b, l_pad), np.int32)
  pos = np.zeros((b, l_pad), np.int32)
  for i, (n, toks) in enumerate(zip(frames, texts)):
    speech[i, :n] = base[i, :n]
    mask[i, :n] = 1
    tokens[i, :len(toks)] = toks
    seg[i, :len(toks)] = 1
    pos[i, :len(toks)] = np.arange(len(toks))
  for i, toks in (packed or {}).items():  # a second packed segment after the first
    start = len(texts[i])
    tokens[i, start:start + len(toks)] = toks
    seg[i, start:start + len(toks)] = 2
    pos[i, start:start + len(toks)] = np.arange(len(toks))
  return speech, mask, tokens, seg, pos


@pytest.fixture(scope="module")
def tiny():
  """The tiny encoder, its params (one real init for the whole file) and a jitted apply."""
  cfg = encoder_lib.get_preset("tiny")
  model = encoder_lib.SlamEncoder(cfg)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), *_batch())
  apply = jax.jit(model.apply, static_argnames=("deterministic",))
  return cfg, model, params, apply


def _assert_same_valid(a, b, valid_a, valid_b, atol=1e-5):
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  valid_a, valid_b = np.asarray(valid_a), np.asarray(valid_b)
  for row in range(a.shape[0]):
    n = int(valid_a[row].sum())
    assert n == int(valid_b[row].sum())
    np.testing.assert_allclose(a[row][valid_a[row]], b[row][valid_b[row]], rtol=1e-4, atol=atol)
    assert n == 0 or np.abs(a[row][valid_a[row]]).max() > 0


def test_outputs_shapes_dtypes_and_mask_helper(tiny):
  cfg, _, params, apply = tiny
  batch = _batch()
  out = apply(params, *batch)
  t_sub = 4  # ceil(13 / 4)
  d = cfg.model_dim
  assert out.features.shape == out.speech_hidden.shape == out.shared_speech.shape == (3, t_sub, d)
  assert out.shared_text.shape == (3, 6, d)
  assert out.speech_valid.dtype == jnp.bool_ and out.text_valid.dtype == jnp.bool_
  assert out.speech_lengths.dtype == jnp.int32
  np.testing.assert_array_equal(out.speech_lengths, [4, 0, 4])
  np.testing.assert_array_equal(out.speech_valid,
                                encoder_lib.SlamEncoder.subsampled_mask(cfg, batch[1]))
  np.testing.assert_array_equal(out.text_valid, batch[3] > 0)
  for name in ("features", "speech_hidden", "shared_speech", "shared_text"):
    x = np.asarray(getattr(out, name))
    assert x.dtype == np.float32 and np.all(np.isfinite(x)), name
  assert np.all(np.asarray(out.shared_text)[~np.asarray(out.text_valid)] == 0)
  assert np.all(np.asarray(out.shared_speech)[~np.asarray(out.speech_valid)] == 0)


def test_padding_invariance_speech_text_and_paired(tiny):
  """Rows: speech only, text only (two packed segments), paired. Short vs long padding."""
  _, _, params, apply = tiny
  kw = dict(frames=(13, 0, 14), texts=((), (3, 4, 5), (8, 9, 10)), packed={1: (11, 12)})
  short = apply(params, *_batch(t_pad=14, l_pad=5, seed=1, **kw))
  long = apply(params, *_batch(t_pad=27, l_pad=9, seed=2, **kw))
  for name in ("features", "speech_hidden", "shared_speech"):
    _assert_same_valid(getattr(short, name), getattr(long, name), short.speech_valid,
                       long.speech_valid)
  _assert_same_valid(short.shared_text, long.shared_text, short.text_valid, long.text_valid)


def test_packed_text_segment_equals_text_alone(tiny):
  _, _, params, apply = tiny
  packed = apply(params, *_batch(frames=(0,), texts=((3, 4, 5),), packed={0: (11, 12)},
                                 t_pad=8, l_pad=6))
  alone = apply(params, *_batch(frames=(0,), texts=((11, 12),), t_pad=8, l_pad=6))
  np.testing.assert_allclose(np.asarray(packed.shared_text)[0, 3:5],
                             np.asarray(alone.shared_text)[0, :2], rtol=1e-4, atol=1e-5)


def test_empty_rows_are_finite(tiny):
  _, _, params, apply = tiny
  batch = _batch(frames=(0, 13, 0), texts=((4, 5), (), ()))  # text only, speech only, nothing
  out = apply(params, *batch, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
  for name in ("features", "speech_hidden", "shared_speech", "shared_text"):
    assert np.all(np.isfinite(np.asarray(getattr(out, name)))), name
  assert not np.any(np.asarray(out.shared_text)[2]) and not np.any(np.asarray(out.shared_speech)[2])


def test_span_mask_replaces_valid_frames_only(tiny):
  _, _, params, apply = tiny
  batch = _batch()
  plain = apply(params, *batch)
  span = np.zeros((3, 4), bool)
  span[0, 1:3] = True
  span[1, :] = True  # row 1 has no speech: nothing to replace
  masked = apply(params, *batch, speech_span_mask=span)
  np.testing.assert_array_equal(plain.features, masked.features)  # targets are unmasked
  assert not np.allclose(np.asarray(plain.speech_hidden)[0], np.asarray(masked.speech_hidden)[0])
  np.testing.assert_array_equal(np.asarray(plain.shared_text)[1],
                                np.asarray(masked.shared_text)[1])
  np.testing.assert_array_equal(np.asarray(plain.speech_hidden)[2],
                                np.asarray(masked.speech_hidden)[2])
  with pytest.raises(ValueError, match="speech_span_mask"):
    apply(params, *batch, speech_span_mask=np.zeros((3, 5), bool))


def test_dropout_uses_dropout_rng(tiny):
  _, _, params, apply = tiny
  batch = _batch()
  a = apply(params, *batch, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})
  b = apply(params, *batch, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
  assert not np.allclose(np.asarray(a.shared_text), np.asarray(b.shared_text))


def test_bfloat16_compute(tiny):
  _, _, params, _ = tiny  # same fp32 param tree whatever the compute dtype
  cfg = encoder_lib.get_preset("tiny", dtype="bfloat16")
  model = encoder_lib.SlamEncoder(cfg)
  apply = jax.jit(model.apply)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(nn.unbox(params)))
  out = apply(params, *_batch())
  for name in ("features", "speech_hidden", "shared_speech", "shared_text"):
    x = getattr(out, name)
    assert x.dtype == jnp.bfloat16, name
    assert np.all(np.isfinite(np.asarray(x, np.float32))), name
  logits = model.apply(params, out.shared_text, method=encoder_lib.SlamEncoder.attend_text)
  assert logits.shape == (3, 6, cfg.vocab_size) and logits.dtype == jnp.float32


def test_every_param_has_logical_axis_names(tiny):
  _, _, params, _ = tiny
  allowed = {None, "embed", "mlp", "heads", "kv", "vocab", "conv", "layers"}
  leaves = jax.tree_util.tree_leaves_with_path(
      params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert leaves
  for path, leaf in leaves:
    assert isinstance(leaf, nn.Partitioned), jax.tree_util.keystr(path)
    assert len(leaf.names) == leaf.value.ndim, jax.tree_util.keystr(path)
    assert set(leaf.names) <= allowed, (jax.tree_util.keystr(path), leaf.names)
    in_stack = "_stack" in jax.tree_util.keystr(path)
    assert (leaf.names[0] == "layers") == in_stack, jax.tree_util.keystr(path)


def test_gradients_finite_with_empty_sides_and_remat_matches(tiny):
  """Grads through fully masked rows are finite; remat (inside scan) changes nothing."""
  cfg, model, params, _ = tiny
  batch = _batch(frames=(0, 13, 0), texts=((4, 5), (), ()))
  span = np.zeros((3, 4), bool)
  span[1, :2] = True

  def grads(m):
    def loss(p):
      # Deterministic: dropout's threefry bits double the compile time; dropout is tested above.
      out = m.apply(p, *batch, speech_span_mask=span)
      return (jnp.sum(out.shared_text ** 2) + jnp.sum(out.shared_speech ** 2)
              + jnp.sum(out.speech_hidden ** 2))
    return jax.jit(jax.grad(loss))(params)

  want = grads(model)
  got = grads(encoder_lib.SlamEncoder(cfg.replace(remat_policy="dots_saveable")))
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(nn.unbox(want)),
                          jax.tree_util.tree_leaves(nn.unbox(got))):
    assert np.all(np.isfinite(np.asarray(a))), jax.tree_util.keystr(path)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
