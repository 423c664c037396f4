"""Log-mel filterbank front end in TensorFlow ops (runs inside tf.data / seqio preprocessors).

Convention (what `log_mel` computes for a waveform x in [-1, 1] at 16 kHz):
  * no dither, no pre-emphasis, no DC removal;
  * frames of 400 samples (25 ms) every 160 samples (10 ms), "snip edges" (Kaldi's default):
    `num_frames = 1 + (num_samples - 400) // 160`, zero frames for clips shorter than 25 ms;
  * periodic Hann window, 512-point FFT, power spectrum |X|^2;
  * 80 triangular filters spaced uniformly on the HTK mel scale mel(f) = 1127 ln(1 + f / 700)
    between 125 Hz and 7600 Hz, triangles defined in the mel domain, unnormalised (peak 1),
    DC bin excluded (`tf.signal.linear_to_mel_weight_matrix`);
  * natural log with a floor: log(max(mel_energy, 1e-5));
  * optional mean/variance normalisation per mel bin: per utterance (default) over its frames,
    or global with given statistics.

`kaldi_fbank_config()` (gin: the LogMelConfig bindings of
gin/experiments/slam_tlm_stm_from_w2v_bert.gin) switches on the options that make
`log_mel` compute what w2v-BERT 2.0 was trained on (HF SeamlessM4TFeatureExtractor, Kaldi-style
fbank): samples scaled to the int16 range, per-frame DC removal, pre-emphasis 0.97, symmetric
povey window (Hann^0.85), Kaldi mel filters (1127 ln(1 + f/700), triangles in the mel domain,
20 Hz - 8 kHz), log floor 1.19e-7 (float32 eps), per-utterance normalisation
with the unbiased variance (ddof 1) and eps 1e-7. The model stacks frame pairs itself
(EncoderConfig.front_end='stacked'). tests/data/test_features.py checks it against transformers.
"""

import dataclasses
from typing import Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from slam_jax import types

NORMALIZATIONS = ("utterance", "global", "none")
WINDOWS = ("hann", "povey")
MEL_SCALES = ("htk", "kaldi")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LogMelConfig:
  """Front-end settings (defaults: the SLAM/w2v-BERT 80-bin, 25 ms / 10 ms front end).

  Attributes:
    sample_rate: input rate in Hz; audio must already be at this rate.
    num_mel_bins: filterbank channels.
    frame_length_ms: analysis window.
    frame_step_ms: hop between frames.
    fft_length: FFT size (>= window length in samples).
    lower_edge_hz: lowest filter edge.
    upper_edge_hz: highest filter edge (<= sample_rate / 2).
    log_floor: energies below this are clamped before the log.
    normalization: "utterance" (mean/variance per bin over the utterance), "global" (with
      `global_mean`/`global_std`), or "none".
    global_mean: [num_mel_bins] means for "global" normalisation.
    global_std: [num_mel_bins] standard deviations for "global" normalisation.
    norm_epsilon: added to the variance before the square root.
    window: 'hann' (periodic Hann, default) or 'povey' (symmetric Hann^0.85, Kaldi).
    preemphasis: coefficient p of x[n] - p x[n-1] within each frame (x[-1] = x[0]); 0 = none.
    remove_dc_offset: subtract each frame's mean before pre-emphasis (Kaldi).
    mel_scale: 'htk' (tf.signal's filters, DC bin excluded) or 'kaldi' (Kaldi's filters).
    input_scale: samples are multiplied by this first (32768 = Kaldi's int16 range).
    variance_ddof: delta degrees of freedom of the per-utterance variance (1 = unbiased).
  """
  sample_rate: int = types.SAMPLE_RATE
  num_mel_bins: int = types.NUM_MEL_BINS
  frame_length_ms: float = 25.0
  frame_step_ms: float = 10.0
  fft_length: int = 512
  lower_edge_hz: float = 125.0
  upper_edge_hz: float = 7600.0
  log_floor: float = 1e-5
  normalization: str = "utterance"
  global_mean: Optional[Sequence[float]] = None
  global_std: Optional[Sequence[float]] = None
  norm_epsilon: float = 1e-5
  window: str = "hann"
  preemphasis: float = 0.0
  remove_dc_offset: bool = False
  mel_scale: str = "htk"
  input_scale: float = 1.0
  variance_ddof: int = 0

  def __post_init__(self):
    if self.window not in WINDOWS:
      raise ValueError(f"LogMelConfig.window={self.window!r}: use one of {WINDOWS}")
    if self.mel_scale not in MEL_SCALES:
      raise ValueError(f"LogMelConfig.mel_scale={self.mel_scale!r}: use one of {MEL_SCALES}")
    if not 0.0 <= self.preemphasis < 1.0:
      raise ValueError(f"LogMelConfig.preemphasis={self.preemphasis!r} must be in [0, 1)")
    if self.variance_ddof not in (0, 1):
      raise ValueError(f"LogMelConfig.variance_ddof={self.variance_ddof!r} must be 0 or 1")
    if self.normalization not in NORMALIZATIONS:
      raise ValueError(f"LogMelConfig.normalization={self.normalization!r}: use one of "
                       f"{NORMALIZATIONS}")
    if self.normalization == "global":
      for name in ("global_mean", "global_std"):
        value = getattr(self, name)
        if value is None or len(value) != self.num_mel_bins:
          raise ValueError(f"LogMelConfig.normalization='global' needs {name} with "
                           f"{self.num_mel_bins} values (see features.estimate_global_stats)")
    if self.frame_length > self.fft_length:
      raise ValueError(f"fft_length={self.fft_length} is shorter than the window "
                       f"({self.frame_length} samples)")
    if self.upper_edge_hz > self.sample_rate / 2:
      raise ValueError(f"upper_edge_hz={self.upper_edge_hz} exceeds Nyquist "
                       f"({self.sample_rate / 2} Hz)")

  @property
  def frame_length(self) -> int:
    """Window length in samples."""
    return int(round(self.sample_rate * self.frame_length_ms / 1000.0))

  @property
  def frame_step(self) -> int:
    """Hop in samples."""
    return int(round(self.sample_rate * self.frame_step_ms / 1000.0))

  @property
  def frames_per_second(self) -> float:
    return self.sample_rate / self.frame_step


def num_frames(num_samples: int, config: LogMelConfig = LogMelConfig()) -> int:
  """Frames `log_mel` yields for `num_samples` samples (snip-edges framing)."""
  if num_samples < config.frame_length:
    return 0
  return 1 + (num_samples - config.frame_length) // config.frame_step


def max_samples_for_frames(frames: int, config: LogMelConfig = LogMelConfig()) -> int:
  """The most samples whose features fit in `frames` frames."""
  if frames <= 0:
    return config.frame_length - 1
  return config.frame_length + frames * config.frame_step - 1


def kaldi_fbank_config(**overrides) -> LogMelConfig:
  """The LogMelConfig of w2v-BERT 2.0's Kaldi-style fbank (see the module docstring)."""
  fields = dict(lower_edge_hz=20.0, upper_edge_hz=8000.0, log_floor=1.1920928955078125e-07,
                normalization="utterance", norm_epsilon=1e-7, window="povey", preemphasis=0.97,
                remove_dc_offset=True, mel_scale="kaldi", input_scale=32768.0, variance_ddof=1)
  fields.update(overrides)
  return LogMelConfig(**fields)


def kaldi_mel_matrix(config: LogMelConfig) -> np.ndarray:
  """[fft_length // 2 + 1, num_mel_bins] float32 Kaldi mel filters: triangles in the mel domain
  (mel(f) = 1127 ln(1 + f / 700)) between lower_edge_hz and upper_edge_hz, peak 1."""
  def mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)
  edges = np.linspace(mel(config.lower_edge_hz), mel(config.upper_edge_hz),
                      config.num_mel_bins + 2)
  bins = config.fft_length // 2 + 1
  fft_mel = mel(np.arange(bins) * config.sample_rate / config.fft_length)[:, None]
  left, centre, right = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
  up = (fft_mel - left) / (centre - left)
  down = (right - fft_mel) / (right - centre)
  return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def mel_weight_matrix(config: LogMelConfig = LogMelConfig()) -> tf.Tensor:
  """[fft_length // 2 + 1, num_mel_bins] float32 mel triangular filters (config.mel_scale)."""
  if config.mel_scale == "kaldi":
    return tf.constant(kaldi_mel_matrix(config))
  return tf.signal.linear_to_mel_weight_matrix(
      num_mel_bins=config.num_mel_bins,
      num_spectrogram_bins=config.fft_length // 2 + 1,
      sample_rate=config.sample_rate,
      lower_edge_hertz=config.lower_edge_hz,
      upper_edge_hertz=config.upper_edge_hz,
      dtype=tf.float32)


def log_mel(waveform: tf.Tensor, config: LogMelConfig = LogMelConfig()) -> tf.Tensor:
  """[samples] float audio in [-1, 1] -> [frames, num_mel_bins] float32 (normalised per config)."""
  waveform = tf.convert_to_tensor(waveform)
  if waveform.dtype == tf.int16:
    waveform = tf.cast(waveform, tf.float32) / 32768.0
  waveform = tf.cast(waveform, tf.float32)
  waveform.shape.assert_has_rank(1)
  # Clips shorter than one window give zero frames; pad them to one window so the FFT op always
  # sees a frame, then drop it.
  num_samples = tf.shape(waveform)[0]
  short = num_samples < config.frame_length
  waveform = tf.pad(waveform, [[0, tf.maximum(0, config.frame_length - num_samples)]])
  if _is_default_analysis(config):
    stft = tf.signal.stft(waveform, frame_length=config.frame_length,
                          frame_step=config.frame_step, fft_length=config.fft_length,
                          window_fn=tf.signal.hann_window,
                          pad_end=False)  # [frames, fft_length // 2 + 1]
  else:
    stft = _kaldi_stft(waveform, config)
  stft = stft[:tf.where(short, 0, tf.shape(stft)[0])]
  power = tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))
  mel = tf.linalg.matmul(power, mel_weight_matrix(config))  # [frames, bins]
  features = tf.math.log(tf.math.maximum(mel, config.log_floor))
  return normalize(features, config)


def _is_default_analysis(config: LogMelConfig) -> bool:
  """Whether framing and windowing are the default ones (tf.signal.stft)."""
  return (config.window == "hann" and config.preemphasis == 0.0 and not config.remove_dc_offset
          and config.input_scale == 1.0)


def _kaldi_stft(waveform: tf.Tensor, config: LogMelConfig) -> tf.Tensor:
  """[frames, fft_length // 2 + 1] complex STFT with the scale / DC removal / pre-emphasis /
  window options of `config`, each frame processed as Kaldi's ProcessWindow does."""
  frames = tf.signal.frame(waveform * config.input_scale, config.frame_length, config.frame_step,
                           pad_end=False)  # [frames, frame_length]
  if config.remove_dc_offset:
    frames = frames - tf.math.reduce_mean(frames, axis=-1, keepdims=True)
  if config.preemphasis:
    p = config.preemphasis
    frames = tf.concat([frames[:, :1] * (1.0 - p), frames[:, 1:] - p * frames[:, :-1]], axis=-1)
  window = tf.signal.hann_window(config.frame_length, periodic=config.window == "hann")
  if config.window == "povey":
    window = tf.math.pow(window, 0.85)
  return tf.signal.rfft(frames * window[tf.newaxis, :], fft_length=[config.fft_length])


def normalize(features: tf.Tensor, config: LogMelConfig = LogMelConfig()) -> tf.Tensor:
  """Mean/variance normalisation of [frames, bins] log-mel features as `config` says."""
  if config.normalization == "none":
    return features
  if config.normalization == "global":
    mean = tf.constant(config.global_mean, tf.float32)[tf.newaxis, :]
    std = tf.constant(config.global_std, tf.float32)[tf.newaxis, :]
    return (features - mean) / tf.math.sqrt(tf.math.square(std) + config.norm_epsilon)
  count = tf.math.maximum(tf.cast(tf.shape(features)[0], tf.float32), 1.0)
  # Shifted by the first frame before averaging: a constant bin (digital silence sits at the log
  # floor) centres to exactly 0 instead of float rounding noise blown up by the rsqrt.
  shift = features[:1]
  shifted = features - shift
  mean = tf.math.reduce_sum(shifted, axis=0, keepdims=True) / count  # [1, bins]
  centred = shifted - mean
  var = tf.math.reduce_sum(tf.math.square(centred), axis=0, keepdims=True) / tf.math.maximum(
      count - config.variance_ddof, 1.0)
  return centred * tf.math.rsqrt(var + config.norm_epsilon)


def estimate_global_stats(feature_arrays, num_mel_bins: int = types.NUM_MEL_BINS):
  """Per-bin (mean, std) over an iterable of un-normalised [frames, bins] arrays.

  Compute features with `LogMelConfig(normalization="none")`, then pass the result as
  `LogMelConfig.global_mean` / `global_std` (gin lists) for global normalisation.
  """
  total = np.zeros([num_mel_bins], np.float64)
  total_sq = np.zeros([num_mel_bins], np.float64)
  count = 0
  for feats in feature_arrays:
    feats = np.asarray(feats, np.float64)
    total += feats.sum(axis=0)
    total_sq += np.square(feats).sum(axis=0)
    count += feats.shape[0]
  if count == 0:
    raise ValueError("estimate_global_stats: no frames given")
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  return [float(v) for v in mean], [float(v) for v in std]
