"""Audio file decoding for the data preparation step (not used inside tf.data).

`load_audio` reads what libsndfile (>= 1.1, via soundfile) decodes -- WAV, FLAC, Ogg Vorbis/Opus
and MP3 -- whatever the file's extension says (the format is taken from the content; `sniff`
names it from the first bytes), downmixes to mono by averaging channels, and resamples to 16 kHz
with soxr (very high quality: stop-band rejection > 100 dB, flat pass band up to 7.6 kHz, the
top mel edge). Every failure raises `AudioDecodeError` naming the file, the reason and advice
that fits it (truncated, unsupported container, not audio).
"""

import os
import re
from typing import Optional, Tuple

import numpy as np
import soundfile
import soxr

from slam_jax import types

# Extensions of audio files (any case); the scanner also sniffs files with other extensions.
SUPPORTED_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".oga")
# Containers recognised by `sniff` that libsndfile cannot decode (convert them first).
UNSUPPORTED_CONTAINERS = ("mp4", "webm")
SILENCE_DBFS = -60.0  # RMS level under which audio counts as near-silent.


class AudioDecodeError(ValueError):
  """A file could not be read as audio (the message names the file and the reason).

  Attributes:
    path: the file.
    detail: the message without the path.
    reason: "empty" (no bytes or no samples), "truncated" (fewer samples than the header
      promises), "corrupt" (a valid header, undecodable data: usually truncated too), "unsupported" (an audio container libsndfile cannot read), "undecodable" (not
      audio, or corrupt), or "non_finite".
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
  """soxr "VHQ" resampling of mono float audio [samples] from `from_rate` to `to_rate` Hz."""
  if from_rate <= 0 or to_rate <= 0:
    raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
  if from_rate == to_rate or samples.size == 0:
    return np.asarray(samples, dtype=np.float32)
  out = soxr.resample(np.asarray(samples, dtype=np.float64), int(from_rate), int(to_rate),
                      quality="VHQ")
  return out.astype(np.float32)


def sniff(path: str) -> Optional[str]:
  """The audio format of `path` from its first bytes ("wav", "flac", "ogg", "mp3", "mp4", ...).

  None when the content is not a recognised audio format (a README, a .DS_Store, ...).
  """
  try:
    with open(path, "rb") as f:
      head = f.read(12)
  except OSError:
    return None
  if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
    return "wav"
  if head[:4] == b"fLaC":
    return "flac"
  if head[:4] == b"OggS":
    return "ogg"
  if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
    return "aiff"
  if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
    return "mp3"
  if head[4:8] == b"ftyp":
    return "mp4"
  if head[:4] == b"\x1aE\xdf\xa3":
    return "webm"
  return None


def silence_level(samples: np.ndarray) -> Tuple[str, float]:
  """("digital" if every sample is 0, "near" if the RMS is under SILENCE_DBFS, else ""), RMS dBFS.

  `samples` is int16 PCM or float audio in [-1, 1].
  """
  x = np.asarray(samples)
  if x.dtype == np.int16:
    x = int16_to_float(x)
  x = x.astype(np.float64)
  if x.size == 0 or not np.any(x):
    return "digital", -np.inf
  rms_db = 10.0 * np.log10(np.mean(np.square(x)))
  return ("near" if rms_db < SILENCE_DBFS else ""), float(rms_db)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
  """[-1, 1] float audio -> int16 PCM (clipped, rounded)."""
  scaled = np.clip(np.rint(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
  return scaled.astype(np.int16)


def int16_to_float(samples: np.ndarray) -> np.ndarray:
  """int16 PCM -> float32 in [-1, 1)."""
  return np.asarray(samples, np.float32) / np.float32(32768.0)


_SHORT_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def load_audio(path: str, target_rate: int = types.SAMPLE_RATE) -> Tuple[np.ndarray, int]:
  """Reads `path` (any format libsndfile decodes, by content), returns (mono float32 samples at
  `target_rate`, original rate).

  Raises:
    AudioDecodeError: the file is missing, empty, truncated, not audio (or in a container
      libsndfile cannot read), or contains non-finite samples.
  """
  try:
    size = os.path.getsize(path)
  except OSError as e:
    raise AudioDecodeError(path, "undecodable", f"cannot read the file ({e})") from e
  if size == 0:
    raise AudioDecodeError(path, "empty", "the file is empty (0 bytes)")
  kind = sniff(path)
  if kind in UNSUPPORTED_CONTAINERS:
    raise AudioDecodeError(path, "unsupported",
                           f"{kind} audio, which libsndfile cannot decode: convert it, e.g. "
                           f"'ffmpeg -i {os.path.basename(path)} -ac 1 -ar 16000 OUT.flac'")
  try:
    f = soundfile.SoundFile(path)
  except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError.
    what = f"{kind} audio with a broken header" if kind else "not a recognised audio format"
    raise AudioDecodeError(path, "undecodable",
                           f"cannot decode it: {what} ({type(e).__name__}: {e}); check what the "
                           "file is, re-copy it or remove it") from e
  with f:
    promised, rate, log = f.frames, f.samplerate, f.extra_info
    try:
      data = f.read(dtype="float32", always_2d=True)
    except Exception as e:  # pylint: disable=broad-except
      raise AudioDecodeError(path, "corrupt",
                             f"the header is valid but the audio data cannot be decoded "
                             f"({type(e).__name__}: {e}): the file is truncated or corrupt; "
                             "re-copy or re-download it") from e
  short = _SHORT_CHUNK.search(log or "")
  # Streaming writers leave the size 0 or 0xFFFFFFFF ("unknown"): not a truncation.
  if short and int(short.group(2)) < int(short.group(1)) < 0xFFFFFFFF:
    raise AudioDecodeError(path, "truncated",
                           f"truncated: the header promises {int(short.group(1))} bytes of audio, "
                           f"the file holds {int(short.group(2))}; re-copy or re-download it")
  if 0 < data.shape[0] < promised:
    raise AudioDecodeError(path, "truncated",
                           f"truncated: the header promises {promised} samples, {data.shape[0]} "
                           "could be read; re-copy or re-download it")
  if data.shape[0] == 0:
    raise AudioDecodeError(path, "empty", "the file holds no audio samples")
  if not np.all(np.isfinite(data)):
    raise AudioDecodeError(path, "non_finite", "the audio contains NaN or Inf samples")
  mono = to_mono(data)
  return resample(mono, int(rate), target_rate), int(rate)
