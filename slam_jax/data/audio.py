"""Audio file decoding for the data preparation step (not used inside tf.data).

`load_audio` reads WAV or FLAC (any sample format soundfile supports: 16-bit, 24-bit, float),
downmixes to mono by averaging channels, and resamples to 16 kHz with a polyphase filter
(`scipy.signal.resample_poly`). Every failure raises `AudioDecodeError` naming the file.
"""

import math
import os
from typing import Tuple

import numpy as np
import scipy.signal
import soundfile

from slam_jax import types

SUPPORTED_EXTENSIONS = (".flac", ".wav")


class AudioDecodeError(ValueError):
  """A file could not be read as audio (the message names the file and the reason).

  Attributes:
    path: the file.
    detail: the message without the path.
    reason: "empty" (no bytes or no samples), "undecodable", or "non_finite".
  """

  def __init__(self, path: str, reason: str, message: str):
    super().__init__(f"{path}: {message}")
    self.path = path
    self.reason = reason
    self.detail = message


def to_mono(samples: np.ndarray) -> np.ndarray:
  """Averages channels: [samples] or [samples, channels] -> [samples] float32."""
  samples = np.asarray(samples, dtype=np.float32)
  if samples.ndim == 1:
    return samples
  if samples.ndim != 2:
    raise ValueError(f"expected [samples] or [samples, channels] audio, got shape {samples.shape}")
  return samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, from_rate: int, to_rate: int = types.SAMPLE_RATE) -> np.ndarray:
  """Polyphase resampling of mono float audio [samples] from `from_rate` to `to_rate` Hz."""
  if from_rate <= 0 or to_rate <= 0:
    raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
  if from_rate == to_rate or samples.size == 0:
    return np.asarray(samples, dtype=np.float32)
  g = math.gcd(int(from_rate), int(to_rate))
  up, down = int(to_rate) // g, int(from_rate) // g
  out = scipy.signal.resample_poly(np.asarray(samples, dtype=np.float64), up, down)
  return out.astype(np.float32)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
  """[-1, 1] float audio -> int16 PCM (clipped, rounded)."""
  scaled = np.clip(np.rint(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
  return scaled.astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
  """int16 PCM -> float32 in [-1, 1)."""
  return np.asarray(samples, np.float32) / np.float32(32768.0)


def load_audio(path: str, target_rate: int = types.SAMPLE_RATE) -> Tuple[np.ndarray, int]:
  """Reads `path` (WAV/FLAC), returns (mono float32 samples at `target_rate`, original rate).

  Raises:
    AudioDecodeError: the file is missing, empty, not audio, or contains non-finite samples.
  """
  try:
    size = os.path.getsize(path)
  except OSError as e:
    raise AudioDecodeError(path, "undecodable", f"cannot read the file ({e})") from e
  if size == 0:
    raise AudioDecodeError(path, "empty", "the file is empty (0 bytes)")
  try:
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
  except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError.
    raise AudioDecodeError(path, "undecodable",
                           f"cannot decode audio ({type(e).__name__}: {e}); re-encode it as "
                           "16-bit or float WAV/FLAC or remove it") from e
  if data.shape[0] == 0:
    raise AudioDecodeError(path, "empty", "the file holds no audio samples")
  if not np.all(np.isfinite(data)):
    raise AudioDecodeError(path, "non_finite", "the audio contains NaN or Inf samples")
  mono = to_mono(data)
  return resample(mono, int(rate), target_rate), int(rate)
