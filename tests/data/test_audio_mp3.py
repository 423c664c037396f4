"""MP3 (Common Voice clips) decodes through slam_jax.data.audio.load_audio: rate, length, pitch."""
import numpy as np
import soundfile

from slam_jax.data import audio as audio_lib


def write_mp3(path, seconds=1.0, rate=48000, freq=440.0, channels=1):
  t = np.arange(int(seconds * rate)) / rate
  wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
  if channels > 1:
    wave = np.stack([wave] * channels, axis=1)
  soundfile.write(path, wave, rate, format="MP3")
  return path


def test_mp3_decodes_to_16k_mono(tmp_path):
  # Named .mp3 as Common Voice names them; also decoded by content under another name.
  for name in ("clip.mp3", "clip_without_extension"):
    path = write_mp3(str(tmp_path / name), seconds=1.0, channels=2)
    samples, rate = audio_lib.load_audio(path)
    assert rate == 48000
    assert samples.ndim == 1 and samples.dtype == np.float32
    # MP3 adds encoder delay/padding of at most a few frames (1152 samples each at 48 kHz).
    assert abs(samples.shape[0] - 16000) < 3 * 1152 // 3
    spectrum = np.abs(np.fft.rfft(samples[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 440.0) < 3.0
    assert 0.3 < np.max(np.abs(samples)) < 0.7
