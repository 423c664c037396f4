"""Speech from TFRecord caches written by `python -m slam_jax.data.prepare` (any corpus).

  librilight_speech            SPEECH rows from `librilight_cache_dir()` (gin, else
                               $SLAM_LIBRILIGHT_CACHE, else ./data/librilight_prepared)
  librispeech_prepared_paired  PAIRED rows from `librispeech_cache_dir()` (gin, else
  librispeech_prepared_speech  $SLAM_LIBRISPEECH_CACHE, else ./data/librispeech_prepared)

Prepare Libri-Light (60k h) once, sharded over processes, e.g. for each split directory:
  python -m slam_jax.data.prepare --src libri-light/large --out CACHE --split train \
      --long_policy split --max_seconds 16 --num_shards 8192 \
      --process_index K --num_processes P --workers 8
`register_prepared_task(name, cache_dir, kind)` adds a task for any other prepared directory.
"""

import functools
import os
from typing import Optional

import gin

from slam_jax import types
from slam_jax.data import prepare as prepare_lib
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from tasks import common

LIBRILIGHT_TASK = "librilight_speech"
LIBRISPEECH_PAIRED_TASK = "librispeech_prepared_paired"
LIBRISPEECH_SPEECH_TASK = "librispeech_prepared_speech"


@gin.configurable
def librilight_cache_dir(path: Optional[str] = None) -> str:
  """Prepared Libri-Light directory (SPLIT.tfrecord-* files)."""
  return os.path.abspath(path or os.environ.get("SLAM_LIBRILIGHT_CACHE")
                         or os.path.join(".", "data", "librilight_prepared"))


@gin.configurable
def librispeech_cache_dir(path: Optional[str] = None) -> str:
  """Prepared LibriSpeech directory (SPLIT.tfrecord-* files)."""
  return os.path.abspath(path or os.environ.get("SLAM_LIBRISPEECH_CACHE")
                         or os.path.join(".", "data", "librispeech_prepared"))


def _pattern(dir_fn, split: str) -> str:
  return prepare_lib.file_pattern(dir_fn() if callable(dir_fn) else dir_fn, split)


def register_prepared_task(name: str, cache_dir, kind: int = types.KIND_SPEECH,
                           vocabulary=None, splits=("train", "validation")):
  """(Re)registers task `name` over prepared TFRecords in `cache_dir` (a path or a function)."""
  return common.register_task(
      name, sources.PreparedSpeechSource(functools.partial(_pattern, cache_dir), splits),
      kind, vocabulary or common.VOCABULARY, prep.from_prepared,
      shuffle_buffer_size=common.SPEECH_SHUFFLE_BUFFER)


register_prepared_task(LIBRILIGHT_TASK, librilight_cache_dir, types.KIND_SPEECH)
register_prepared_task(LIBRISPEECH_PAIRED_TASK, librispeech_cache_dir, types.KIND_PAIRED)
register_prepared_task(LIBRISPEECH_SPEECH_TASK, librispeech_cache_dir, types.KIND_SPEECH)
