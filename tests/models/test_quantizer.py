"""Gumbel product quantizer: shapes, temperature, perplexity, straight-through gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax.models import quantizer as quantizer_lib

CFG = quantizer_lib.QuantizerConfig(num_groups=2, num_entries=4, code_dim=6)


def _setup(batch=2, frames=5, dim=3):
  features = jax.random.normal(jax.random.key(0), (batch, frames, dim))
  weights = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)[:batch]
  q = quantizer_lib.GumbelQuantizer(CFG)
  variables = q.init(jax.random.key(1), features, weights)
  return q, variables, features, weights


def test_shapes_and_hard_codes():
  q, variables, features, weights = _setup()
  out = q.apply(variables, features, weights)
  assert out.quantized.shape == (2, 5, 6) and out.ids.shape == (2, 5, 2)
  assert out.probs.shape == (2, 5, 2, 4)
  np.testing.assert_array_equal(out.ids, out.quantized_ids)
  codebook = np.asarray(nn.unbox(variables["params"]["codebook"]))
  ids = np.asarray(out.ids)
  expected = np.concatenate([codebook[0][ids[..., 0]], codebook[1][ids[..., 1]]], axis=-1)
  np.testing.assert_allclose(out.quantized, expected, rtol=1e-6)
  # Perplexity over the weighted frames only, within [G, G*V].
  p = np.asarray(out.probs)[np.asarray(weights) > 0].mean(0)
  ref = np.sum(np.exp(-np.sum(p * np.log(p), -1)))
  np.testing.assert_allclose(out.perplexity, ref, rtol=1e-5)
  assert 2.0 <= float(out.perplexity) <= 8.0


def _logits(variables, features):
  """numpy reference: each frame standardised over its features (eps 1e-5), then projected."""
  p = nn.unbox(variables["params"]["logits"])
  x = np.asarray(features, np.float64)
  x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  return np.einsum("btd,dgv->btgv", x,
                   np.asarray(p["kernel"], np.float64)) + np.asarray(p["bias"], np.float64)


def test_probs_are_the_softmax_of_the_logits_and_ids_their_argmax():
  q, variables, features, weights = _setup()
  out = q.apply(variables, features, weights)
  logits = _logits(variables, features)
  ref = np.exp(logits - logits.max(-1, keepdims=True))
  ref /= ref.sum(-1, keepdims=True)
  np.testing.assert_allclose(out.probs, ref, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(out.ids, logits.argmax(-1))


def test_straight_through_forward_is_the_hard_codebook_lookup():
  q, variables, features, weights = _setup(frames=5)
  codebook = np.asarray(nn.unbox(variables["params"]["codebook"]))
  for seed in range(3):
    out = q.apply(variables, features, weights, step=0, deterministic=False,
                  rngs={"gumbel": jax.random.key(seed)})
    picked = np.asarray(out.quantized_ids)
    expected = np.concatenate([codebook[g][picked[..., g]] for g in range(2)], axis=-1)
    np.testing.assert_allclose(out.quantized, expected, rtol=1e-6, atol=1e-7)


def test_logits_and_picks_in_fp32_under_bf16():
  q, variables, features, weights = _setup()
  q16 = quantizer_lib.GumbelQuantizer(CFG, jnp.bfloat16)
  a = q.apply(variables, features, weights, deterministic=False, rngs={"gumbel": jax.random.key(4)})
  b = q16.apply(variables, features, weights, deterministic=False,
                rngs={"gumbel": jax.random.key(4)})
  np.testing.assert_array_equal(a.probs, b.probs)
  np.testing.assert_array_equal(a.quantized_ids, b.quantized_ids)
  assert b.probs.dtype == jnp.float32 and b.quantized.dtype == jnp.float32


def test_per_row_gumbel_keys_do_not_depend_on_the_batch_around_a_row():
  q, variables, features, weights = _setup()
  keys = jax.random.key_data(jax.random.split(jax.random.key(7), 2))
  run = lambda rows: q.apply(variables, features[rows], weights[rows], deterministic=False,
                             noise_keys=keys[rows])
  both, second = run(np.array([0, 1])), run(np.array([1]))
  np.testing.assert_array_equal(both.quantized_ids[1:], second.quantized_ids)
  np.testing.assert_array_equal(both.quantized[1:], second.quantized)


def test_w2v_bert_default_layout():
  cfg = quantizer_lib.QuantizerConfig()
  assert (cfg.num_groups, cfg.num_entries, cfg.num_codes) == (1, 1024, 1024)


def test_temperature_schedule():
  cfg = quantizer_lib.QuantizerConfig(temperature_end=0.5)  # wav2vec 2.0 BASE: (2, 0.5, 0.999995)
  np.testing.assert_allclose(cfg.temperature(0), 2.0)
  np.testing.assert_allclose(cfg.temperature(100_000), 2.0 * 0.999995 ** 100_000, rtol=1e-5)
  np.testing.assert_allclose(cfg.temperature(10_000_000), 0.5)


def test_training_mode_samples_and_is_deterministic_per_key():
  q, variables, features, weights = _setup()
  run = lambda k: q.apply(variables, features, weights, step=10, deterministic=False,
                          rngs={"gumbel": k})
  a, b = run(jax.random.key(5)), run(jax.random.key(5))
  np.testing.assert_array_equal(a.quantized, b.quantized)
  samples = [np.asarray(run(jax.random.key(s)).quantized_ids) for s in range(8)]
  assert any(np.any(s != samples[0]) for s in samples[1:])  # noise changes the picks
  np.testing.assert_array_equal(a.ids, q.apply(variables, features, weights).ids)  # targets not


def test_straight_through_gradient_reaches_features_and_padding_gets_none():
  q, variables, features, weights = _setup()
  probe = jax.random.normal(jax.random.key(2), (2, 5, 6))

  def f(x):
    out = q.apply(variables, x, weights, deterministic=False, rngs={"gumbel": jax.random.key(3)})
    # Only real frames enter the objective, as in the losses.
    return jnp.sum(out.quantized * probe * weights[..., None])

  g = np.asarray(jax.grad(f)(features))
  assert np.all(np.isfinite(g))
  assert np.all(np.abs(g[np.asarray(weights) > 0]).sum(-1) > 0)  # gradient through the soft path
  assert np.all(g[np.asarray(weights) == 0] == 0)
  # The deterministic (hard argmax) path has no gradient to the features.
  g_hard = jax.grad(lambda x: jnp.sum(q.apply(variables, x, weights).quantized * probe))(features)
  assert bool(jnp.all(g_hard == 0))


def test_config_validation():
  with pytest.raises(ValueError, match="code_dim"):
    quantizer_lib.QuantizerConfig(num_groups=3, code_dim=8)


@pytest.mark.parametrize("stddev,agree_range", [(1.0, (0.75, 1.0)), (None, (0.0, 0.6))])
def test_input_not_gumbel_noise_picks_the_codes_at_init(stddev, agree_range):
  """fairseq's N(0, 1) logits init (default): at the start temperature 2, the sampled code of a
  unit-scale frame mostly equals its noise-free argmax, so the targets depend on the input. Under
  lecun_normal (None) the noise picks most codes: the demo's contrastive loss stayed at chance."""
  cfg = quantizer_lib.QuantizerConfig(num_groups=1, num_entries=64, code_dim=16,
                                      logits_init_stddev=stddev)
  features = jax.random.normal(jax.random.key(0), (4, 200, 96))  # LayerNorm'd frames: unit scale
  weights = jnp.ones((4, 200))
  q = quantizer_lib.GumbelQuantizer(cfg)
  variables = q.init(jax.random.key(1), features, weights)
  kernel = np.asarray(nn.unbox(variables["params"]["logits"]["kernel"]))
  np.testing.assert_allclose(kernel.std(), 1.0 if stddev else 1 / np.sqrt(96), rtol=0.05)
  out = q.apply(variables, features, weights, deterministic=False, step=0,
                rngs={"gumbel": jax.random.key(2)})
  agree = float(np.mean(np.asarray(out.quantized_ids) == np.asarray(out.ids)))
  assert agree_range[0] <= agree <= agree_range[1], agree


def test_normalised_input_makes_the_codes_independent_of_the_feature_scale():
  """The diversity loss cannot flatten the logits by shrinking the features (it did on the demo):
  with normalize_input (default) the logits of features / 10 equal those of the features (up to
  the norm's epsilon); without it they are 10x flatter."""
  features = jax.random.normal(jax.random.key(0), (2, 30, 16)) + 0.5
  weights = jnp.ones((2, 30))
  for normalize, same in ((True, True), (False, False)):
    cfg = quantizer_lib.QuantizerConfig(num_groups=1, num_entries=8, code_dim=4,
                                        normalize_input=normalize)
    q = quantizer_lib.GumbelQuantizer(cfg)
    variables = q.init(jax.random.key(1), features, weights)
    a, b = (q.apply(variables, x, weights) for x in (features, features / 10))
    assert np.allclose(a.probs, b.probs, atol=1e-3) == same
    if same:
      np.testing.assert_array_equal(a.ids, b.ids)
