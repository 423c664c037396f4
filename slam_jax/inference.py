"""Embeddings from a SLAM encoder checkpoint, for users who just want vectors.

    enc = Encoder.load("CKPT")                       # written by python -m slam_jax.convert
    e = enc.embed_speech("a.flac")                   # or a float waveform in [-1, 1] at 16 kHz
    e.frames  # [T', D] one vector per valid encoder frame;  e.pooled  # [D] their mean
    enc.embed_text("hello world").pooled
    p = enc.embed_pair("a.flac", "hello world")      # p.speech, p.text, p.pooled
    enc.embed_speech(["a.flac", "b.flac"], layer=8)  # lists are batched; any layer

Layers (`layer`, Python indexing, default -1 = the last):
  speech: 0 = the speech stack's input, 1..S = speech-only layers, S+1..S+H = shared layers
    (for an imported w2v-BERT 2.0 this is HF's `hidden_states` indexing);
  text and pairs: 0 = the shared stack's input, 1..H = shared layers.
Padding is handled inside: inputs of a call are batched `batch_size` rows at a time (empty rows
fill the last batch), padded to a multiple of `pad_multiple` frames / tokens, and each result holds
its valid positions only. Outputs
do not depend on the padding (tests/test_inference.py checks batched against one-at-a-time calls).
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import encoder_io
from slam_jax import types
from slam_jax.models import config as config_lib
from slam_jax.models import conformer as conformer_lib
from slam_jax.models import encoder as encoder_lib

Audio = Union[str, np.ndarray]
Text = Union[str, Sequence[int]]


@dataclasses.dataclass(frozen=True)
class Embedding:
  """One input's embedding.

  Attributes:
    frames: float32 [T, D] one vector per valid position (encoder frames or text tokens).
    pooled: float32 [D] the mean of `frames`.
  """
  frames: np.ndarray
  pooled: np.ndarray


@dataclasses.dataclass(frozen=True)
class PairEmbedding:
  """A [speech; text] pair's embedding through the shared stack.

  Attributes:
    speech: the speech positions.
    text: the text positions.
    pooled: float32 [D] the mean over all valid speech and text positions.
  """
  speech: Embedding
  text: Embedding
  pooled: np.ndarray


def _is_block(module: nn.Module, method_name: str) -> bool:
  return isinstance(module, conformer_lib.ConformerBlock) and method_name == "__call__"


class Encoder:
  """A SlamEncoder with its parameters, front end and vocabulary, for embedding inputs.

  Args:
    config: the encoder architecture (runs unrolled, fp32 unless `config.dtype` says otherwise).
    params: its params (either layer layout).
    frontend: LogMelConfig fields of the features it expects (None = the default front end).
    vocab: SentencePiece model file for `embed_text(str)` (token ids work without one).
    batch_size: inputs per forward pass.
    pad_multiple: frame / token lengths are padded to a multiple of this (fewer compilations).
  """

  def __init__(self, config: config_lib.EncoderConfig, params: Any,
               frontend: Optional[Dict[str, Any]] = None, vocab: Optional[str] = None,
               batch_size: int = 8, pad_multiple: int = 32):
    self.config = config.replace(scan_layers=False, remat_policy="none")
    self.params = jax.tree_util.tree_map(
        jnp.asarray, encoder_io.relayout_layers(params, scan_layers=False))
    self.frontend = dict(frontend or {})
    self.vocab = vocab
    self.batch_size = int(batch_size)
    self.pad_multiple = int(pad_multiple)
    self._module = encoder_lib.SlamEncoder(self.config)
    self._run = jax.jit(self._forward)

  @classmethod
  def load(cls, checkpoint: str, vocab: Optional[str] = None, dtype: Optional[str] = None,
           **kwargs) -> "Encoder":
    """An Encoder from an encoder checkpoint directory (see slam_jax/encoder_io.py).

    Args:
      checkpoint: the directory.
      vocab: SentencePiece model; default: the checkpoint's vocab.model, if any.
      dtype: compute dtype override ('float32' | 'bfloat16').
      **kwargs: batch_size, pad_multiple.
    """
    config, params = encoder_io.load(checkpoint)
    if dtype is not None:
      config = config.replace(dtype=dtype)
    return cls(config, params, frontend=encoder_io.load_frontend(checkpoint),
               vocab=vocab or encoder_io.vocab_path(checkpoint), **kwargs)

  # ---------------------------------------------------------------- inputs

  @property
  def num_speech_layers(self) -> int:
    return self.config.num_speech_layers

  @property
  def num_shared_layers(self) -> int:
    return self.config.num_shared_layers

  def features(self, audio: Audio) -> np.ndarray:
    """float32 [frames, num_mel_bins] features of a file path or a [samples] waveform (16 kHz)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from slam_jax.data import audio as audio_lib  # pylint: disable=g-import-not-at-top
    from slam_jax.data import features as features_lib  # pylint: disable=g-import-not-at-top
    if isinstance(audio, str):
      audio, _ = audio_lib.load_audio(audio)
    waveform = np.asarray(audio)
    if waveform.ndim != 1:
      raise ValueError(f"Encoder.features: a waveform must be 1-D [samples] at "
                       f"{types.SAMPLE_RATE} Hz, got shape {waveform.shape}")
    config = features_lib.LogMelConfig(**self.frontend)
    feats = features_lib.log_mel(tf.constant(waveform), config).numpy()
    if feats.shape[0] == 0:
      raise ValueError(f"Encoder.features: {waveform.shape[0]} samples are shorter than one "
                       f"{config.frame_length_ms} ms frame")
    return feats

  def tokenize(self, text: Text) -> np.ndarray:
    """int32 [tokens] ids of `text` (normalised, SentencePiece, + EOS) or the given ids as is."""
    if not isinstance(text, str):
      return np.asarray(text, np.int32).reshape(-1)
    if self.vocab is None:
      raise ValueError("Encoder.tokenize: no SentencePiece model; pass vocab= to Encoder.load "
                       "(or token ids instead of a string)")
    from slam_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
    ids = vocab_lib._processor(self.vocab).encode(vocab_lib.normalize_text(text))  # pylint: disable=protected-access
    return np.asarray(list(ids) + [vocab_lib.EOS_ID], np.int32)

  # ---------------------------------------------------------------- model

  def _forward(self, params, feats, mask, tokens, segments, positions):
    out, state = self._module.apply(
        {"params": params}, feats, mask, tokens, segments, positions,
        capture_intermediates=_is_block, mutable=["intermediates"])
    inter = state["intermediates"]
    speech = [inter["speech_stack_input"][0]]
    speech += [inter["speech_stack"][f"layer_{i}"]["__call__"][0][0]
               for i in range(self.config.num_speech_layers)]
    joint = [inter["shared_stack_input"][0]]
    joint += [inter["shared_stack"][f"layer_{i}"]["__call__"][0][0]
              for i in range(self.config.num_shared_layers)]
    t = out.speech_valid.shape[1]
    speech_states = jnp.stack(speech + [j[:, :t] for j in joint[1:]]).astype(jnp.float32)
    joint_states = jnp.stack(joint).astype(jnp.float32)
    return (speech_states, joint_states[:, :, :t], joint_states[:, :, t:], out.speech_valid,
            out.text_valid)

  def _pad(self, n: int) -> int:
    return max(self.pad_multiple, -(-n // self.pad_multiple) * self.pad_multiple)

  def _batch(self, feats: Sequence[Optional[np.ndarray]], ids: Sequence[Optional[np.ndarray]]):
    """Padded model inputs for rows of (features or None, token ids or None); always
    `batch_size` rows (empty ones after the inputs), so calls reuse one compiled shape per
    length bucket."""
    rows = self.batch_size
    mel = self.config.num_mel_bins
    frames = self._pad(max([f.shape[0] for f in feats if f is not None] or [1]))
    length = self._pad(max([len(i) for i in ids if i is not None] or [1]))
    x = np.zeros((rows, frames, mel), np.float32)
    mask = np.zeros((rows, frames), np.int32)
    tokens = np.zeros((rows, length), np.int32)
    segments = np.zeros((rows, length), np.int32)
    positions = np.tile(np.arange(length, dtype=np.int32), (rows, 1))
    for r, (f, i) in enumerate(zip(feats, ids)):
      if f is not None:
        x[r, :f.shape[0]] = f
        mask[r, :f.shape[0]] = 1
      if i is not None:
        tokens[r, :len(i)] = i
        segments[r, :len(i)] = 1
    return x, mask, tokens, segments, positions

  def _encode(self, feats, ids):
    """Per row: (speech states [L_s, T', D], joint speech [L_j, T', D], joint text [L_j, L, D],
    speech valid [T'], text valid [L]) as numpy."""
    out = []
    for start in range(0, len(feats), self.batch_size):
      chunk = slice(start, start + self.batch_size)
      arrays = self._batch(feats[chunk], ids[chunk])
      result = [np.asarray(a) for a in self._run(self.params, *arrays)]
      for r in range(len(feats[chunk])):
        out.append((result[0][:, r], result[1][:, r], result[2][:, r], result[3][r],
                    result[4][r]))
    return out

  @staticmethod
  def _pick(states: np.ndarray, layer: int, what: str) -> np.ndarray:
    n = states.shape[0]
    if not -n <= layer < n:
      raise ValueError(f"layer={layer} out of range for {what}: {n} hidden states "
                       f"(0 = stack input .. {n - 1}; negative counts from the end)")
    return states[layer]

  @staticmethod
  def _embedding(frames: np.ndarray, valid: np.ndarray) -> Embedding:
    kept = frames[valid]
    pooled = kept.mean(axis=0) if kept.shape[0] else np.zeros(frames.shape[-1], np.float32)
    return Embedding(frames=kept, pooled=pooled)

  # ---------------------------------------------------------------- public API

  def embed_speech(self, audio: Union[Audio, List[Audio]],
                   layer: int = -1) -> Union[Embedding, List[Embedding]]:
    """Speech-only embeddings: of one input (path or waveform), or of a list of them."""
    single = not isinstance(audio, list)
    items = [audio] if single else audio
    feats = [self.features(a) for a in items]
    results = self._encode(feats, [None] * len(feats))
    out = [self._embedding(self._pick(r[0], layer, "speech"), r[3]) for r in results]
    return out[0] if single else out

  def embed_text(self, text: Union[Text, List[Text]],
                 layer: int = -1) -> Union[Embedding, List[Embedding]]:
    """Text-only embeddings (shared stack) of a string / token ids, or of a list of them."""
    single = isinstance(text, str) or (not isinstance(text, list)) or (
        len(text) > 0 and isinstance(text[0], (int, np.integer)))
    items = [text] if single else text
    ids = [self.tokenize(t) for t in items]
    results = self._encode([None] * len(ids), ids)
    out = [self._embedding(self._pick(r[2], layer, "text"), r[4]) for r in results]
    return out[0] if single else out

  def embed_pair(self, audio: Union[Audio, List[Audio]], text: Union[Text, List[Text]],
                 layer: int = -1) -> Union[PairEmbedding, List[PairEmbedding]]:
    """[speech; text] embeddings through the shared stack (one pair, or lists of equal length)."""
    single = not isinstance(audio, list)
    audios = [audio] if single else audio
    texts = [text] if single else text
    if len(audios) != len(texts):
      raise ValueError(f"embed_pair: {len(audios)} audio inputs but {len(texts)} texts")
    feats = [self.features(a) for a in audios]
    ids = [self.tokenize(t) for t in texts]
    out = []
    for r in self._encode(feats, ids):
      speech = self._embedding(self._pick(r[1], layer, "pairs"), r[3])
      text_e = self._embedding(self._pick(r[2], layer, "pairs"), r[4])
      both = np.concatenate([speech.frames, text_e.frames], axis=0)
      out.append(PairEmbedding(speech=speech, text=text_e, pooled=both.mean(axis=0)))
    return out[0] if single else out
