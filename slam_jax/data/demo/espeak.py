"""eSpeak NG speech synthesis through ctypes, with the library and data from `espeakng-loader`.

No system package is needed: the PyPI package ships `libespeak-ng.so` and `espeak-ng-data`.
The engine runs in synchronous retrieval mode (AUDIO_OUTPUT_SYNCHRONOUS): `espeak_Synth` returns
when the text is spoken and our callback has received all 16-bit mono samples (22050 Hz).
eSpeak is a process-wide singleton and not thread-safe: use one `Synthesizer` per process.
"""

import ctypes
import dataclasses
import os
import threading
from typing import List

import numpy as np

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EE_OK = 0
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


@dataclasses.dataclass(frozen=True)
class Voice:
  """One synthetic "speaker": an eSpeak voice (+variant), speaking rate and pitch.

  Attributes:
    name: eSpeak voice name with optional variant, e.g. "en-us+f3".
    rate: words per minute (80..450).
    pitch: base pitch 0..100.
    pitch_range: pitch variation 0..100.
  """
  name: str
  rate: int = 170
  pitch: int = 50
  pitch_range: int = 50


class EspeakError(RuntimeError):
  pass


class Synthesizer:
  """Text -> int16 waveform at `sample_rate` (22050 Hz for eSpeak NG)."""

  _lock = threading.Lock()

  def __init__(self):
    import espeakng_loader  # pylint: disable=g-import-not-at-top
    lib_path = espeakng_loader.get_library_path()
    data_path = espeakng_loader.get_data_path()
    try:
      self._lib = ctypes.CDLL(lib_path)
    except OSError as e:
      raise EspeakError(f"cannot load eSpeak NG from {lib_path}: {e}; reinstall espeakng-loader")
    lib = self._lib
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    # espeak_Initialize wants the directory that *contains* espeak-ng-data.
    root = os.path.dirname(os.path.abspath(data_path)).encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, root, _INITIALIZE_DONT_EXIT)
    if rate <= 0:
      raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data at {data_path}")
    self.sample_rate = int(rate)
    self._chunks: List[np.ndarray] = []
    self._callback = _CALLBACK(self._on_samples)  # Keep a reference: C holds a raw pointer.
    lib.espeak_SetSynthCallback(self._callback)
    self._voice = None

  def _on_samples(self, wav, num_samples, unused_events) -> int:
    if num_samples > 0 and wav:
      self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
    return 0  # 0 = continue synthesis.

  def _set_voice(self, voice: Voice) -> None:
    if voice == self._voice:
      return
    if self._lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
      raise EspeakError(f"eSpeak has no voice {voice.name!r}")
    for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch),
                         (_PARAM_RANGE, voice.pitch_range), (_PARAM_VOLUME, 100)):
      if self._lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
        raise EspeakError(f"espeak_SetParameter({param}, {value}) failed for {voice}")
    self._voice = voice

  def synthesize(self, text: str, voice: Voice) -> np.ndarray:
    """Speaks `text` with `voice`; returns int16 samples [n] at `self.sample_rate`."""
    with self._lock:
      self._set_voice(voice)
      self._chunks = []
      data = text.encode("utf-8") + b"\0"
      status = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None,
                                      None)
      if status != _EE_OK:
        raise EspeakError(f"espeak_Synth failed ({status}) for {text!r} with {voice}")
      self._lib.espeak_Synchronize()
      chunks, self._chunks = self._chunks, []
    if not chunks:
      return np.zeros([0], np.int16)
    return np.concatenate(chunks).astype(np.int16, copy=False)
