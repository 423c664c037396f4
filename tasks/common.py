"""Shared pieces of the slam seqio tasks: output features, vocabulary, preprocessor chains.

Every task emits the same three features (slam_jax/types.py), so any of them mix:
  speech: seqio.ContinuousFeature(float32, rank=2)  [frames, 80] log-mel
  text:   seqio.Feature(SentencePiece vocabulary)     [tokens] ids ending in EOS
  kind:   seqio.Feature(rank=1)                        [1]: types.KIND_* (a vector of one, not a
          scalar: seqio's Evaluator, which t5x.eval runs, measures every feature's length)

Settings resolved when a dataset is built (so gin bindings parsed after `import tasks` apply):
`slam_jax.data.features.LogMelConfig`, `slam_jax.data.filters.FilterConfig`,
`vocabulary_path.path` (or $SLAM_VOCAB).
"""

import functools
import os
from typing import Callable, Dict, List, Optional

import gin
import seqio
import tensorflow as tf

from slam_jax import metrics as metrics_lib
from slam_jax import types
from slam_jax.data import deferred_vocab
from slam_jax.data import features as features_lib
from slam_jax.data import filters as filters_lib
from slam_jax.data import preprocessors as prep

DEFAULT_DEMO_DIR = os.path.join(".", "data", "demo")
# Shuffle buffers (examples): log-mel features take ~32 kB per second of audio.
SPEECH_SHUFFLE_BUFFER = 256
TEXT_SHUFFLE_BUFFER = 10000


@gin.configurable
def demo_data_dir(data_dir: Optional[str] = None) -> str:
  """The demo corpus directory: the gin binding, else $SLAM_DATA_DIR, else ./data/demo."""
  return os.path.abspath(data_dir or os.environ.get("SLAM_DATA_DIR") or DEFAULT_DEMO_DIR)


@gin.configurable
def vocabulary_path(path: Optional[str] = None) -> str:
  """SentencePiece model for the real-corpus tasks: gin, else $SLAM_VOCAB, else the demo one."""
  return path or os.environ.get("SLAM_VOCAB") or os.path.join(demo_data_dir(), "vocab",
                                                              "spm.model")


def make_vocabulary(path_fn: Callable[[], str]) -> seqio.Vocabulary:
  return deferred_vocab.DeferredSentencePieceVocabulary(path_fn)


# One instance shared by all real-corpus tasks (mixtures compare vocabularies).
VOCABULARY = make_vocabulary(vocabulary_path)
KIND_VOCABULARY = seqio.PassThroughVocabulary(size=len(types.KIND_NAMES))


def output_features(vocabulary: seqio.Vocabulary) -> Dict[str, seqio.Feature]:
  return {
      types.TASK_SPEECH: seqio.ContinuousFeature(dtype=tf.float32, rank=2),
      types.TASK_TEXT: seqio.Feature(vocabulary=vocabulary, add_eos=True, dtype=tf.int32),
      types.TASK_KIND: seqio.Feature(vocabulary=KIND_VOCABULARY, add_eos=False, dtype=tf.int32,
                                     rank=1),
  }


def _speech_step(task_name: str):
  def speech(dataset, sequence_length=None):
    return prep.speech_features(dataset, task_name=task_name,
                                frontend=features_lib.LogMelConfig(),
                                config=filters_lib.FilterConfig(),
                                sequence_length=sequence_length)
  return speech


def _text_step(task_name: str, vocabulary: seqio.Vocabulary):
  def text(dataset, sequence_length=None):
    return prep.text_tokens(dataset, task_name=task_name, vocabulary=vocabulary,
                            config=filters_lib.FilterConfig(), sequence_length=sequence_length)
  return text


def _tokenize_step(task_name: str, vocabulary: seqio.Vocabulary):
  def tokenize(dataset):
    return prep.tokenize_text(dataset, task_name=task_name, vocabulary=vocabulary,
                              config=filters_lib.FilterConfig())
  return tokenize


def _text_length_step(task_name: str):
  def lengths(dataset, sequence_length=None):
    return prep.text_lengths(dataset, task_name=task_name, config=filters_lib.FilterConfig(),
                             sequence_length=sequence_length)
  return lengths


def preprocessors(task_name: str, kind: int, vocabulary: seqio.Vocabulary,
                  to_raw: Callable) -> List[Callable]:
  """Raw-form mapping, then the speech and/or text steps `kind` needs, then `finalize`.

  Text-only tasks can be cached offline by seqio's `cache_tasks_main` (Beam): tokenised rows
  are stored, the length rules (which depend on the run's feature lengths) run after reading.
  Speech comes prepared by `slam_jax.data.prepare` instead (decoded 16 kHz PCM), so speech and
  paired tasks have no cache step.
  """
  steps = [to_raw]
  if kind == types.KIND_TEXT:
    steps += [_tokenize_step(task_name, vocabulary),
              seqio.CacheDatasetPlaceholder(required=False),
              _text_length_step(task_name)]
  if kind in (types.KIND_SPEECH, types.KIND_PAIRED):
    steps.append(_speech_step(task_name))
  if kind == types.KIND_PAIRED:
    steps.append(_text_step(task_name, vocabulary))
  steps.append(functools.partial(prep.finalize, kind=kind))
  return steps


def register_task(name: str, source: seqio.DataSource, kind: int,
                  vocabulary: seqio.Vocabulary, to_raw: Callable,
                  shuffle_buffer_size: int = 1000) -> seqio.Task:
  """(Re)registers a slam task: an existing task of that name is replaced.

  Its metric is the mean pre-training loss, overall and per kind (`metrics.pretraining_loss`, a
  seqio score metric): what `python -m t5x.eval --gin_file=gin/t5x/eval.gin` reports.
  """
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=source, output_features=output_features(vocabulary),
      preprocessors=preprocessors(name, kind, vocabulary, to_raw),
      metric_fns=[metrics_lib.pretraining_loss], shuffle_buffer_size=shuffle_buffer_size)


def register_mixture(name: str, tasks_and_rates) -> seqio.Mixture:
  """(Re)registers a mixture; rates may be callables (resolved when the dataset is built)."""
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(tasks_and_rates))
