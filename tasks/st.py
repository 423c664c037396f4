"""Sequence-to-sequence tasks (speech translation, attention-based ASR) and the demo ST task.

A seq2seq task emits the SLAM task features with the *target* in the text slot, tokenised by the
task's target vocabulary (kind PAIRED), so the fine-tuning data path (SlamFeatureConverter)
serves them unchanged and `Seq2SeqModel` reads the target from `text_tokens`:

  slam_demo_st        demo paired speech -> the demo target language (DIR/st/SPLIT.tsv,
                      DIR/vocab/spm_target.model; slam_jax/data/demo/target_language.py);
                      metrics BLEU, chrF
  slam_demo_asr_s2s   demo paired speech -> its English transcript (attention ASR); metric WER
  librispeech_asr_s2s TFDS LibriSpeech 960 h -> transcript (attention ASR); metric WER
CoVoST 2 En->X tasks are in tasks/covost2.py.

Targets keep their case (CoVoST 2 scores case-sensitive BLEU); only surrounding whitespace is
stripped. Empty targets are dropped and counted ("TASK/empty_target"), long ones follow
`FilterConfig.long_text` ("TASK/target_too_long").
"""

import functools
import os
from typing import Callable, Optional, Sequence

import seqio
import tensorflow as tf

from slam_jax import types
from slam_jax.data import filters as filters_lib
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from slam_jax.data import vocab as vocab_lib
from slam_jax.data.demo import target_language
from slam_jax.finetune import st_metrics
from tasks import common
from tasks import demo
from tasks import librispeech

DEMO_ST_TASK = "slam_demo_st"
DEMO_ASR_TASK = "slam_demo_asr_s2s"
LIBRISPEECH_ASR_TASK = "librispeech_asr_s2s"
TARGET = "target"  # raw-form field holding the target string


def target_tokens(ds: tf.data.Dataset, *, task_name: str, vocabulary: seqio.Vocabulary,
                  config: filters_lib.FilterConfig,
                  sequence_length=None) -> tf.data.Dataset:
  """{target string} -> {text int32 [tokens + EOS]} (case kept; empty dropped; long trimmed or
  dropped per config.long_text)."""
  max_tokens = config.max_text_tokens
  if max_tokens is None and sequence_length and sequence_length.get(types.TASK_TEXT):
    max_tokens = int(sequence_length[types.TASK_TEXT])
  ds = ds.map(lambda ex: dict(ex, **{TARGET: tf.strings.strip(ex[TARGET])}),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.filter(lambda ex: filters_lib.keep_and_count(
      f"{task_name}/empty_target", tf.equal(tf.strings.length(ex[TARGET]), 0), ex["id"]))
  ds = ds.map(lambda ex: dict(ex, text=tf.cast(vocabulary.encode_tf(ex[TARGET]), tf.int32)),
              num_parallel_calls=tf.data.AUTOTUNE)
  if max_tokens is not None:
    name = f"{task_name}/target_too_long"
    too_long = lambda ex: tf.shape(ex["text"])[0] > max_tokens - 1
    if config.long_text == "drop":
      ds = ds.filter(lambda ex: filters_lib.keep_and_count(name, too_long(ex), ex["id"]))
    else:
      def trim(ex):
        with tf.control_dependencies([filters_lib.count_where(name, too_long(ex), ex["id"])]):
          return dict(ex, text=tf.identity(ex["text"][:max_tokens - 1]))
      ds = ds.map(trim, num_parallel_calls=tf.data.AUTOTUNE)
  eos = tf.constant([vocab_lib.EOS_ID], tf.int32)
  return ds.map(lambda ex: dict(ex, text=tf.concat([ex["text"], eos], axis=0)),
                num_parallel_calls=tf.data.AUTOTUNE)


def register_seq2seq_task(name: str, source: seqio.DataSource, vocabulary: seqio.Vocabulary,
                          to_raw: Callable, metric_fns: Sequence[Callable],
                          shuffle_buffer_size: int = common.SPEECH_SHUFFLE_BUFFER) -> seqio.Task:
  """(Re)registers a speech -> text task; `to_raw` yields {id, audio int16 [n], target}."""
  def speech(dataset, sequence_length=None):
    return prep.speech_features(dataset, task_name=name,
                                frontend=common.features_lib.LogMelConfig(),
                                config=filters_lib.FilterConfig(), sequence_length=sequence_length)

  def target(dataset, sequence_length=None):
    return target_tokens(dataset, task_name=name, vocabulary=vocabulary,
                         config=filters_lib.FilterConfig(), sequence_length=sequence_length)

  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=source, output_features=common.output_features(vocabulary),
      preprocessors=[to_raw, target, speech,
                     functools.partial(prep.finalize, kind=types.KIND_PAIRED)],
      metric_fns=list(metric_fns), shuffle_buffer_size=shuffle_buffer_size)


def wer(targets, predictions):
  """seqio metric_fn: {'wer': corpus word error rate in %} (jiwer)."""
  import jiwer  # pylint: disable=g-import-not-at-top
  return {"wer": 100.0 * float(jiwer.wer(list(targets), list(predictions)))}


# --- the demo ----------------------------------------------------------------------------------

def _demo_dir(data_dir: Optional[str]) -> str:
  return os.path.abspath(data_dir) if data_dir else common.demo_data_dir()


def _translations(data_dir: Optional[str]) -> tf.lookup.StaticHashTable:
  """id -> translation over every split's DIR/st/SPLIT.tsv (ids are unique across splits)."""
  ids, targets = [], []
  for split in demo.SPLITS:
    path = target_language.tsv_path(_demo_dir(data_dir), split)
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"{path} does not exist: the demo corpus predates speech translation; add it with "
          f"`python -m slam_jax.data.demo.target_language --corpus {_demo_dir(data_dir)}`")
    with open(path, encoding="utf-8") as f:
      for line in f:
        uid, _, target = line.rstrip("\n").split("\t")
        ids.append(uid)
        targets.append(target)
  return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(ids, targets), "")


def _demo_st_raw(ds: tf.data.Dataset, data_dir: Optional[str]) -> tf.data.Dataset:
  """Prepared paired records -> {id, audio, target = the utterance's translation}."""
  ds = prep.from_prepared(ds)
  table = _translations(data_dir)
  return ds.map(lambda ex: {"id": ex["id"], "audio": ex["audio"],
                            TARGET: table.lookup(ex["id"])},
                num_parallel_calls=tf.data.AUTOTUNE)


def _demo_asr_raw(ds: tf.data.Dataset) -> tf.data.Dataset:
  ds = prep.from_prepared(ds)
  return ds.map(lambda ex: {"id": ex["id"], "audio": ex["audio"],
                            TARGET: prep.normalize_text_tf(ex["transcript"])})


def register_demo_seq2seq_tasks(data_dir: Optional[str] = None) -> None:
  """(Re)registers slam_demo_st and slam_demo_asr_s2s for `data_dir` (None: demo_data_dir())."""
  hint = ("build the demo corpus: `python -m slam_jax.data.demo --out DIR` and set "
          "$SLAM_DATA_DIR or gin demo_data_dir.data_dir")
  paired = sources.PreparedSpeechSource(
      functools.partial(demo._prepared_pattern, data_dir, "paired"),  # pylint: disable=protected-access
      demo.SPLITS, hint=hint)
  target_vocab = common.make_vocabulary(lambda: os.path.join(
      _demo_dir(data_dir), "vocab", target_language.TARGET_VOCAB + ".model"))
  register_seq2seq_task(DEMO_ST_TASK, paired, target_vocab,
                        functools.partial(_demo_st_raw, data_dir=data_dir),
                        st_metrics.METRIC_FNS, shuffle_buffer_size=128)
  english = common.make_vocabulary(functools.partial(demo._vocab_path, data_dir))  # pylint: disable=protected-access
  register_seq2seq_task(DEMO_ASR_TASK, paired, english, _demo_asr_raw, (wer,),
                        shuffle_buffer_size=128)


def _librispeech_raw(ds: tf.data.Dataset) -> tf.data.Dataset:
  ds = prep.from_tfds_librispeech(ds)
  return ds.map(lambda ex: {"id": ex["id"], "audio": ex["audio"],
                            TARGET: prep.normalize_text_tf(ex["transcript"])})


register_demo_seq2seq_tasks()
register_seq2seq_task(
    LIBRISPEECH_ASR_TASK,
    sources.TfdsSource(librispeech.TFDS_NAME, librispeech.librispeech_splits(),
                       librispeech.librispeech_data_dir),
    common.VOCABULARY, _librispeech_raw, (wer,))
