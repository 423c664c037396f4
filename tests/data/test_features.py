"""Log-mel front end against an independent numpy reference, plus known answers."""
import numpy as np
import pytest
import tensorflow as tf

from slam_jax.data import features


def _htk_mel(hz):
  return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def _reference(x, config):
  """numpy log-mel written from the documented convention (not from the TF code)."""
  n_win, hop, n_fft = config.frame_length, config.frame_step, config.fft_length
  n_frames = 1 + (x.shape[0] - n_win) // hop
  idx = hop * np.arange(n_frames)[:, None] + np.arange(n_win)[None, :]
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_win) / n_win)  # Periodic Hann.
  spec = np.fft.rfft(x[idx].astype(np.float64) * window, n=n_fft)
  power = spec.real ** 2 + spec.imag ** 2
  bin_mel = _htk_mel(np.linspace(0, config.sample_rate / 2, n_fft // 2 + 1))
  edges = np.linspace(_htk_mel(config.lower_edge_hz), _htk_mel(config.upper_edge_hz),
                      config.num_mel_bins + 2)
  weights = np.zeros([n_fft // 2 + 1, config.num_mel_bins])
  for m in range(config.num_mel_bins):
    lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
    rising = (bin_mel - lo) / (mid - lo)
    falling = (hi - bin_mel) / (hi - mid)
    weights[:, m] = np.maximum(0.0, np.minimum(rising, falling))
  weights[0, :] = 0.0  # DC excluded.
  feats = np.log(np.maximum(power @ weights, config.log_floor))
  if config.normalization == "utterance":
    feats = (feats - feats.mean(0)) / np.sqrt(feats.var(0) + config.norm_epsilon)
  return feats


def _signal(seconds=1.0, rate=16000, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * rate)) / rate
  chirp = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
  return (chirp + 0.02 * rng.standard_normal(t.shape[0])).astype(np.float32)


@pytest.mark.parametrize("normalization", ["none", "utterance"])
def test_matches_numpy_reference(normalization):
  config = features.LogMelConfig(normalization=normalization)
  x = _signal()
  got = features.log_mel(tf.constant(x), config).numpy()
  want = _reference(x, config)
  assert got.shape == want.shape == (features.num_frames(x.shape[0]), 80)
  np.testing.assert_allclose(got, want, atol=2e-3 if normalization == "none" else 5e-3)


def test_frame_count_and_short_input():
  assert features.num_frames(16000) == 98 and features.num_frames(399) == 0
  assert features.log_mel(tf.zeros([399])).shape == (0, 80)
  assert features.log_mel(tf.zeros([400])).shape == (1, 80)
  for frames in (1, 5, 100):
    n = features.max_samples_for_frames(frames)
    assert features.num_frames(n) == frames and features.num_frames(n + 1) == frames + 1


def test_sine_peaks_in_the_right_bin():
  config = features.LogMelConfig(normalization="none")
  t = np.arange(16000) / 16000
  feats = features.log_mel(tf.constant(np.sin(2 * np.pi * 1000 * t), tf.float32), config).numpy()
  centres_hz = 700.0 * np.expm1(np.linspace(_htk_mel(125), _htk_mel(7600), 82)[1:-1] / 1127.0)
  assert np.argmax(feats.mean(0)) == np.argmin(np.abs(centres_hz - 1000.0))


def test_int16_input_and_normalisation():
  x = _signal()
  pcm = np.round(x * 32768).astype(np.int16)
  a = features.log_mel(tf.constant(pcm)).numpy()
  b = features.log_mel(tf.constant(pcm.astype(np.float32) / 32768)).numpy()
  np.testing.assert_allclose(a, b, atol=1e-5)
  np.testing.assert_allclose(a.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(a.std(0), 1.0, atol=1e-2)


def test_global_normalisation():
  raw = features.LogMelConfig(normalization="none")
  feats = [features.log_mel(tf.constant(_signal(seed=s)), raw).numpy() for s in range(2)]
  mean, std = features.estimate_global_stats(feats)
  config = features.LogMelConfig(normalization="global", global_mean=mean, global_std=std)
  out = np.concatenate([features.log_mel(tf.constant(_signal(seed=s)), config).numpy()
                        for s in range(2)])
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-3)
  with pytest.raises(ValueError, match="global_mean"):
    features.LogMelConfig(normalization="global")


def test_runs_inside_tf_data():
  ds = tf.data.Dataset.from_tensor_slices(np.stack([_signal(), _signal(seed=1)]))
  shapes = [f.shape for f in ds.map(features.log_mel)]
  assert shapes == [(98, 80), (98, 80)]


def test_kaldi_fbank_matches_transformers_seamless_extractor():
  """kaldi_fbank_config() = what w2v-BERT 2.0 was trained on (HF SeamlessM4TFeatureExtractor)."""
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  rng = np.random.RandomState(0)
  # A tone plus noise, 0.57 s: an odd number of frames (55); HF pads a 56th (masked out).
  t = np.arange(9120) / 16000.0
  x = (0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.randn(t.size)).astype(np.float32)
  hf = transformers.SeamlessM4TFeatureExtractor()(x, sampling_rate=16000, return_tensors="np")
  want = hf["input_features"][0].reshape(-1, 80)  # [2 * steps, 80]
  ours = features.log_mel(tf.constant(x), features.kaldi_fbank_config()).numpy()
  assert ours.shape == (55, 80) and want.shape == (56, 80)
  assert hf["attention_mask"][0].sum() == 27  # floor(55 / 2) stacked steps, as stacked_mask.
  # Per-bin normalisation makes the features O(1): an absolute tolerance is meaningful.
  np.testing.assert_allclose(ours, want[:55], atol=5e-4, rtol=0)  # measured 6.5e-5
  # And the default front end is a different one (this test can fail).
  default = features.log_mel(tf.constant(x)).numpy()
  assert np.abs(default - want[:55]).max() > 0.1


def test_kaldi_mel_matrix_known_answers():
  config = features.kaldi_fbank_config()
  m = features.kaldi_mel_matrix(config)
  assert m.shape == (257, 80)
  # Each filter peaks (near 1) at its centre frequency and is zero at DC and Nyquist.
  assert np.all(m[0] == 0) and np.all(m[-1] == 0)
  assert np.all(m.max(axis=0) > 0.4) and m.max() <= 1.0
  edges = np.linspace(_htk_mel(20.0), _htk_mel(8000.0), 82)
  centre_hz = 700.0 * np.expm1(edges[1:-1] / 1127.0)
  peak_bin = m.argmax(axis=0)
  np.testing.assert_allclose(peak_bin * 16000 / 512, centre_hz, atol=16000 / 512)


@pytest.mark.parametrize("seconds", [0.5, 5.0, 20.0])
def test_normalised_features_of_digital_silence_are_zero(seconds):
  # Were a constant -0.0365 (float rounding of the mean, scaled up by rsqrt(var + eps)).
  feats = features.log_mel(tf.zeros([int(seconds * 16000)])).numpy()
  assert feats.shape[0] > 0
  np.testing.assert_array_equal(feats, 0.0)
