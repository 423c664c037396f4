"""Downstream seqio tasks (fine-tuning and evaluation), with their metrics as `metric_fns`.

ASR (PAIRED rows: log-mel + transcript; metric: WER):
  slam_demo_asr                 demo paired set: train speakers / held-out validation speakers
  slam_demo_asr_chars           the same with a character vocabulary (DIR/vocab/chars.model, a
                                SentencePiece char model built from the train transcripts on
                                first use): CTC over ~30 characters instead of 1023 pieces
  librispeech_asr_960h          TFDS librispeech: train_clean100+360+other500 / dev_clean
  librispeech_asr_100h          TFDS librispeech: train_clean100 / dev_clean
  librispeech_asr_10h           prepared dir (Libri-Light's 10 h limited-resource set, prepared
                                with slam_jax.data.prepare) `librispeech_10h_cache_dir()`;
                                validation = dev_clean prepared into the same dir
  librispeech_prepared_asr      any prepared LibriSpeech dir (`librispeech_cache_dir()`)
  (test sets: `librispeech_eval_split.name = 'test_clean'` etc. for the TFDS tasks)
Text classification (TEXT rows + 'label'; metric: accuracy):
  slam_demo_cls                 the demo's who-acts label (slam_jax/data/demo/classification.py)
  glue_<name>                   TFDS glue/<name> for cola, sst2, mrpc, qqp, mnli, qnli, rte
The label feature's vocabulary (`ClassLabelVocabulary`) carries the class names, which is how a
ClassifierModel learns them from the task.
"""

import functools
import os
from typing import Callable, Dict, Optional, Sequence

import gin
import seqio
import tensorflow as tf

from slam_jax import metrics
from slam_jax import types
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from slam_jax.data.demo import classification as demo_cls
from tasks import common
from tasks import demo
from tasks import librilight
from tasks import librispeech

LABEL = "label"
DEMO_ASR_TASK = "slam_demo_asr"
DEMO_CLS_TASK = "slam_demo_cls"
DEMO_ASR_CHARS_TASK = "slam_demo_asr_chars"
CHAR_VOCAB_SIZE = 40  # an upper bound: PAD/EOS/UNK + the characters of the transcripts


class ClassLabelVocabulary(seqio.PassThroughVocabulary):
  """Pass-through ids of a label feature that know their class names."""

  def __init__(self, class_names: Sequence[str]):
    super().__init__(size=len(class_names))
    self.class_names = tuple(class_names)


def asr_output_features(vocabulary):
  return common.output_features(vocabulary)


def register_asr_task(name: str, source: seqio.DataSource, vocabulary, to_raw: Callable,
                      shuffle_buffer_size: int = common.SPEECH_SHUFFLE_BUFFER) -> seqio.Task:
  """(Re)registers an ASR task: PAIRED rows scored by WER."""
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=source, output_features=common.output_features(vocabulary),
      preprocessors=common.preprocessors(name, types.KIND_PAIRED, vocabulary, to_raw),
      metric_fns=[metrics.wer], shuffle_buffer_size=shuffle_buffer_size)


def _finalize_with_label(ds: tf.data.Dataset) -> tf.data.Dataset:
  """`prep.finalize` for TEXT rows that keeps the int32 'label'."""
  def fn(ex):
    return {types.TASK_SPEECH: tf.zeros([0, types.NUM_MEL_BINS], tf.float32),
            types.TASK_TEXT: ex[types.TASK_TEXT],
            types.TASK_KIND: tf.constant([types.KIND_TEXT], tf.int32), "id": ex["id"],
            LABEL: tf.cast(ex[LABEL], tf.int32)}
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def register_classification_task(name: str, source: seqio.DataSource, vocabulary,
                                 to_raw: Callable, class_names: Sequence[str],
                                 shuffle_buffer_size: int = 10000) -> seqio.Task:
  """(Re)registers a text classification task: TEXT rows + 'label', scored by accuracy.

  `to_raw` maps source examples to {id, transcript, label}.
  """
  seqio.TaskRegistry.remove(name)
  features = dict(common.output_features(vocabulary))
  features[LABEL] = seqio.Feature(vocabulary=ClassLabelVocabulary(class_names), add_eos=False,
                                  dtype=tf.int32, rank=0)
  steps = [to_raw,
           functools.partial(_text_step, task_name=name, vocabulary=vocabulary),
           _finalize_with_label]
  return seqio.TaskRegistry.add(name, source=source, output_features=features,
                                preprocessors=steps, metric_fns=[metrics.accuracy],
                                shuffle_buffer_size=shuffle_buffer_size)


def _text_step(dataset, sequence_length=None, *, task_name, vocabulary):
  from slam_jax.data import filters as filters_lib  # pylint: disable=g-import-not-at-top
  return prep.text_tokens(dataset, task_name=task_name, vocabulary=vocabulary,
                          config=filters_lib.FilterConfig(), sequence_length=sequence_length)


# --- demo ---------------------------------------------------------------------------------------

@gin.configurable
def demo_cls_sizes(train: int = 4000, validation: int = 500) -> Dict[str, int]:
  """Examples per split of slam_demo_cls (generated from the grammar, seeds 1 and 2)."""
  return {"train": train, "validation": validation}


@gin.configurable
def demo_asr_train_fraction(fraction: float = 1.0) -> float:
  """Share of the demo ASR tasks' train utterances kept (a fixed subset by id hash): 0.1 is a
  low-resource setting of ~200 utterances, where pre-training is expected to matter most."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"tasks.downstream.demo_asr_train_fraction.fraction = {fraction}: set it in "
                     "(0, 1] (1.0 keeps every train utterance)")
  return fraction


def _demo_cls_dataset(split: str, shuffle_files: bool = False, seed: Optional[int] = None):
  del shuffle_files, seed
  rows = demo_cls.examples(seed={"train": 1, "validation": 2}[split], n=demo_cls_sizes()[split])
  return tf.data.Dataset.from_tensor_slices({
      "id": [f"{split}-{i}" for i in range(len(rows))],
      "transcript": [s for s, _ in rows],
      LABEL: tf.constant([l for _, l in rows], tf.int32)})


def _identity(ds):
  return ds


def _char_vocab_path(data_dir: Optional[str]) -> str:
  """DIR/vocab/chars.model, trained from DIR/paired/train's transcripts when missing."""
  from slam_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  root = demo._dir(data_dir)  # pylint: disable=protected-access
  path = os.path.join(root, "vocab", "chars.model")
  if not os.path.exists(path):
    sentences = vocab_lib.read_sentences(os.path.join(root, "paired", "train"))
    if not sentences:
      raise FileNotFoundError(f"No transcripts under {root}/paired/train to build {path} from; "
                              "build the demo corpus first (python -m slam_jax.data.demo)")
    vocab_lib.train_sentencepiece(sentences, path[:-len(".model")], CHAR_VOCAB_SIZE, "char")
  return path


def register_demo_downstream_tasks(data_dir: Optional[str] = None) -> None:
  """slam_demo_asr and slam_demo_cls over the demo corpus in `data_dir` (None = demo_data_dir)."""
  hint = ("build the demo corpus: `python -m slam_jax.data.demo --out DIR` and set "
          "$SLAM_DATA_DIR or gin demo_data_dir.data_dir")
  vocabulary = common.make_vocabulary(functools.partial(demo._vocab_path, data_dir))  # pylint: disable=protected-access
  register_asr_task(
      DEMO_ASR_TASK,
      sources.PreparedSpeechSource(
          functools.partial(demo._prepared_pattern, data_dir, "paired"),  # pylint: disable=protected-access
          demo.SPLITS, hint=hint, train_fraction=demo_asr_train_fraction),
      vocabulary, prep.from_prepared, shuffle_buffer_size=128)
  register_asr_task(
      DEMO_ASR_CHARS_TASK,
      sources.PreparedSpeechSource(
          functools.partial(demo._prepared_pattern, data_dir, "paired"),  # pylint: disable=protected-access
          demo.SPLITS, hint=hint, train_fraction=demo_asr_train_fraction),
      common.make_vocabulary(functools.partial(_char_vocab_path, data_dir)), prep.from_prepared,
      shuffle_buffer_size=128)
  register_classification_task(
      DEMO_CLS_TASK, seqio.FunctionDataSource(_demo_cls_dataset, splits=demo.SPLITS),
      vocabulary, _identity, demo_cls.CLASS_NAMES, shuffle_buffer_size=1000)


# --- LibriSpeech ------------------------------------------------------------------------------

@gin.configurable
def librispeech_eval_split(name: str = "dev_clean") -> str:
  """TFDS split the LibriSpeech ASR tasks evaluate on (dev_clean, dev_other, test_clean, ...)."""
  return name


@gin.configurable
def librispeech_10h_cache_dir(path: Optional[str] = None) -> str:
  """Prepared dir of the 10 h fine-tuning set (gin, else $SLAM_LIBRISPEECH_10H_CACHE)."""
  return os.path.abspath(path or os.environ.get("SLAM_LIBRISPEECH_10H_CACHE")
                         or os.path.join(".", "data", "librispeech_10h_prepared"))


class _LazySplits(dict):
  """Split mapping whose validation entry is read from gin when the dataset is built."""

  def __init__(self, train: str):
    super().__init__(train=train, validation="dev_clean")

  def __getitem__(self, key):
    return librispeech_eval_split() if key == "validation" else super().__getitem__(key)


def register_librispeech_asr_tasks() -> None:
  trains = {"librispeech_asr_960h": "train_clean100+train_clean360+train_other500",
            "librispeech_asr_100h": "train_clean100"}
  for name, train in trains.items():
    register_asr_task(name, sources.TfdsSource(librispeech.TFDS_NAME, _LazySplits(train),
                                               librispeech.librispeech_data_dir),
                      common.VOCABULARY, prep.from_tfds_librispeech)
  for name, dir_fn in (("librispeech_asr_10h", librispeech_10h_cache_dir),
                       ("librispeech_prepared_asr", librilight.librispeech_cache_dir)):
    register_asr_task(
        name, sources.PreparedSpeechSource(
            functools.partial(librilight._pattern, dir_fn), ("train", "validation")),  # pylint: disable=protected-access
        common.VOCABULARY, prep.from_prepared)


# --- GLUE ---------------------------------------------------------------------------------------

GLUE = {  # name: (text fields, class names, validation split)
    "cola": (("sentence",), ("unacceptable", "acceptable"), "validation"),
    "sst2": (("sentence",), ("negative", "positive"), "validation"),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "validation"),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), "validation"),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             "validation_matched"),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), "validation"),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), "validation"),
}
GLUE_SEPARATOR = " . "
GLUE_VERSION = "2.0.0"


@gin.configurable
def glue_data_dir(data_dir: Optional[str] = None) -> Optional[str]:
  """TFDS data dir holding glue: gin, else $TFDS_DATA_DIR, else TFDS's default."""
  return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def _from_glue(ds, fields):
  def fn(ex):
    text = ex[fields[0]]
    for f in fields[1:]:
      text = tf.strings.join([text, ex[f]], separator=GLUE_SEPARATOR)
    return {"id": tf.strings.as_string(ex["idx"]), "transcript": text,
            LABEL: tf.cast(ex["label"], tf.int32)}
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def register_glue_tasks(vocabulary=None) -> None:
  for name, (fields, class_names, validation) in GLUE.items():
    register_classification_task(
        f"glue_{name}",
        sources.TfdsSource(f"glue/{name}:{GLUE_VERSION}", {"train": "train", "validation": validation},
                           glue_data_dir),
        vocabulary or common.VOCABULARY, functools.partial(_from_glue, fields=fields),
        class_names)


register_demo_downstream_tasks()
register_librispeech_asr_tasks()
register_glue_tasks()
