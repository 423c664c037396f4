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
"""

import dataclasses
from typing import Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from slam_jax import types

NORMALIZATIONS = ("utterance", "global", "none")


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

  def __post_init__(self):
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


def mel_weight_matrix(config: LogMelConfig = LogMelConfig()) -> tf.Tensor:
  """[fft_length // 2 + 1, num_mel_bins] float32 HTK-mel triangular filters."""
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
  stft = tf.signal.stft(waveform, frame_length=config.frame_length, frame_step=config.frame_step,
                        fft_length=config.fft_length, window_fn=tf.signal.hann_window,
                        pad_end=False)  # [frames, fft_length // 2 + 1]
  stft = stft[:tf.where(short, 0, tf.shape(stft)[0])]
  power = tf.math.square(tf.math.real(stft)) + tf.math.square(tf.math.imag(stft))
  mel = tf.linalg.matmul(power, mel_weight_matrix(config))  # [frames, bins]
  features = tf.math.log(tf.math.maximum(mel, config.log_floor))
  return normalize(features, config)


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
  var = tf.math.reduce_sum(tf.math.square(centred), axis=0, keepdims=True) / count
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
