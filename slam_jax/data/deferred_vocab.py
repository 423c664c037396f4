"""A seqio SentencePiece vocabulary whose model path is resolved when it is first used.

Tasks are registered at import time, before gin bindings are parsed or the data exist. This
vocabulary calls `path_fn()` (e.g. a gin-configured data dir) at tokenisation time, and again at
each use, so a changed binding is picked up. Two instances are equal when they share `path_fn`
and `extra_ids` (what seqio's mixture compatibility check compares).
"""

from typing import Callable

import seqio
import tensorflow as tf

from slam_jax.data import vocab as vocab_lib


class DeferredSentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """`seqio.SentencePieceVocabulary` with a lazily resolved model path (see module doc)."""

  def __init__(self, path_fn: Callable[[], str], extra_ids: int = vocab_lib.DEFAULT_EXTRA_IDS):
    self._path_fn = path_fn
    super().__init__(sentencepiece_model_file="", extra_ids=extra_ids)

  def _model_context(self):
    path = self._path_fn()
    if path != self._sentencepiece_model_file:
      self._sentencepiece_model_file = path
      self._model = None
    if self._model is None and not tf.io.gfile.exists(path):
      raise FileNotFoundError(
          f"SentencePiece model {path} does not exist: build the demo corpus with "
          "`python -m slam_jax.data.demo --out DIR` (it trains DIR/vocab/spm.model), train one "
          "with `python -m slam_jax.data.vocab`, or bind tasks.vocabulary_path.path in gin.")
    return super()._model_context()

  @property
  def sentencepiece_model_file(self) -> str:
    return self._path_fn()

  def __eq__(self, other):
    if not isinstance(other, DeferredSentencePieceVocabulary):
      return False
    return self._path_fn == other._path_fn and self._extra_ids == other._extra_ids

  def __hash__(self):
    return hash((self._path_fn, self._extra_ids))

  def __str__(self):
    return (f"DeferredSentencePieceVocabulary(path={self._path_fn()}, "
            f"extra_ids={self._extra_ids})")
