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


def _level_db(x, freq, rate=16000):
  """Amplitude of the `freq` component of x (dB re full scale sine amplitude 1)."""
  x = np.asarray(x, np.float64)[2000:-2000]
  t = np.arange(x.shape[0]) / rate
  w = np.hanning(x.shape[0])
  amp = np.abs(np.sum(x * w * np.exp(-2j * np.pi * freq * t))) * 2 / np.sum(w)
  return 20 * np.log10(amp + 1e-30)


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("freq", [8100.0, 8400.0, 9000.0])
def test_resampler_rejects_the_stop_band(rate, freq):
  # The scipy default filter put an 8.4 kHz tone at 7.6 kHz at -12 dB (issue 16, D1).
  t = np.arange(rate) / rate
  y = audio.resample(np.sin(2 * np.pi * freq * t), rate)
  assert _level_db(y, 16000 - freq) < -100.0  # The alias.
  assert 10 * np.log10(np.mean(np.square(y[2000:-2000])) + 1e-30) < -100.0  # Anything at all.


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("freq", [1000.0, 7000.0, 7400.0])
def test_resampler_pass_band_is_flat(rate, freq):
  t = np.arange(rate) / rate
  y = audio.resample(0.5 * np.sin(2 * np.pi * freq * t), rate)
  assert abs(_level_db(y, freq) - 20 * np.log10(0.5)) < 0.05


def test_mp3_content_under_a_flac_name_is_decoded(tmp_path):
  tone = _tone(16000, seconds=1.0, freq=440.0, amp=0.3)
  path = str(tmp_path / "song.flac")
  soundfile.write(path, tone, 16000, format="MP3")
  assert audio.sniff(path) == "mp3"
  x, rate = audio.load_audio(path)
  assert rate == 16000 and abs(x.shape[0] - 16000) < 1200
  assert abs(_peak_hz(x) - 440.0) < 5.0


def test_sniff_by_content(tmp_path):
  for fmt, subtype, want in (("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"),
                             ("OGG", "VORBIS", "ogg")):
    path = str(tmp_path / f"x.{want}.bin")
    soundfile.write(path, _tone(16000), 16000, format=fmt, subtype=subtype)
    assert audio.sniff(path) == want
  (tmp_path / "readme.txt").write_text("hello")
  assert audio.sniff(str(tmp_path / "readme.txt")) is None


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_truncated_files_are_rejected(tmp_path, fmt):
  path = tmp_path / f"cut.{fmt.lower()}"
  noise = np.random.default_rng(0).uniform(-0.5, 0.5, 32000).astype(np.float32)
  soundfile.write(str(path), noise, 16000, format=fmt, subtype="PCM_16")
  whole = path.read_bytes()
  path.write_bytes(whole[:len(whole) // 2])
  with pytest.raises(audio.AudioDecodeError) as e:
    audio.load_audio(str(path))
  assert e.value.reason == ("truncated" if fmt == "WAV" else "corrupt"), e.value
  assert "re-download" in str(e.value) and "16-bit" not in str(e.value)


def test_garbage_and_unsupported_containers_get_their_own_advice(tmp_path):
  garbage = tmp_path / "x.wav"
  garbage.write_bytes(b"\x00\x01garbage" * 50)
  with pytest.raises(audio.AudioDecodeError, match="not a recognised audio format") as e:
    audio.load_audio(str(garbage))
  assert e.value.reason == "undecodable"
  m4a = tmp_path / "x.m4a"
  m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 100)
  with pytest.raises(audio.AudioDecodeError, match="ffmpeg") as e:
    audio.load_audio(str(m4a))
  assert e.value.reason == "unsupported"


def test_silence_level():
  assert audio.silence_level(np.zeros(100, np.int16))[0] == "digital"
  assert audio.silence_level(np.full(100, 3, np.int16))[0] == "near"  # -80 dBFS.
  assert audio.silence_level(_tone(16000, amp=0.01))[0] == ""  # -43 dBFS.
