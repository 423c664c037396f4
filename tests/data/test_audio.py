"""Decoding, resampling and downmixing of generated WAV/FLAC files."""
import numpy as np
import pytest
import soundfile

from slam_jax.data import audio


def _tone(rate, seconds=0.5, freq=440.0, amp=0.5):
  t = np.arange(int(rate * seconds)) / rate
  return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x, rate=16000):
  spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
  return np.argmax(spec) * rate / x.shape[0]


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16")])
def test_decode_and_resample(tmp_path, rate, fmt, subtype):
  path = str(tmp_path / f"tone.{fmt.lower()}")
  soundfile.write(path, _tone(rate), rate, subtype=subtype, format=fmt)
  x, orig = audio.load_audio(path)
  assert orig == rate and x.dtype == np.float32
  assert abs(x.shape[0] - 8000) <= 1  # 0.5 s at 16 kHz.
  assert abs(_peak_hz(x) - 440.0) < 5.0
  assert abs(np.abs(x[200:-200]).max() - 0.5) < 0.02  # Amplitude preserved (16-bit rounding).


def test_stereo_is_averaged(tmp_path):
  left, right = _tone(16000, freq=300.0), _tone(16000, freq=1000.0, amp=0.25)
  path = str(tmp_path / "stereo.wav")
  soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
  x, _ = audio.load_audio(path)
  np.testing.assert_allclose(x, (left + right) / 2, atol=1e-6)


def test_int16_round_trip():
  pcm = np.array([-32768, -1, 0, 1, 32767], np.int16)
  np.testing.assert_array_equal(audio.float_to_int16(audio.int16_to_float(pcm)), pcm)
  assert audio.float_to_int16(np.array([2.0, -2.0]))[0] == 32767  # Clipped.


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"not audio at all" * 10, "undecodable")])
def test_bad_files_name_the_file(tmp_path, content, reason):
  path = tmp_path / "bad.flac"
  path.write_bytes(content)
  with pytest.raises(audio.AudioDecodeError) as e:
    audio.load_audio(str(path))
  assert e.value.reason == reason and str(path) in str(e.value)


def test_no_samples_and_missing(tmp_path):
  path = str(tmp_path / "zero.wav")
  soundfile.write(path, np.zeros([0], np.float32), 16000, subtype="PCM_16")
  with pytest.raises(audio.AudioDecodeError, match="no audio samples"):
    audio.load_audio(path)
  with pytest.raises(audio.AudioDecodeError, match="missing.wav"):
    audio.load_audio(str(tmp_path / "missing.wav"))
