"""CoVoST 2 En->X speech translation tasks (SLAM's ST benchmark: En->De, Ca, Ar, Tr).

  covost2_en_{de,ca,ar,tr}   PAIRED rows: log-mel of the English clip + the translation,
                             tokenised by the target language's SentencePiece model;
                             metric_fns BLEU and chrF (sacrebleu, detokenized, case-sensitive)

Data: `python -m slam_jax.data.covost` prepares the official TSVs + Common Voice MP3 clips into
`covost2_cache_dir(tgt)` (gin, else $COVOST2_CACHE/covost2_en_<tgt>), splits train / dev / test
(the task's validation = dev). Target vocabulary: `covost2_vocab_path(tgt)` (gin, else
<cache dir>/spm_target.model; train one on the train translations with
`python -m slam_jax.data.vocab --text_files ...`; CoVoST 2's baselines use 8k pieces for En->X,
Wang et al. 2020). Nothing is read at import: paths resolve when a dataset is built.
"""

import functools
import os
from typing import Optional

import gin
import seqio
import tensorflow as tf

from slam_jax.data import covost as covost_lib
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from slam_jax.finetune import st_metrics
from tasks import common
from tasks import st

TASK_SPLITS = {"train": "train", "validation": "dev", "test": "test"}
FEATURE_DESCRIPTION = dict(prep.PREPARED_FEATURE_DESCRIPTION,
                           translation=tf.io.FixedLenFeature([], tf.string, default_value=""))


def task_name(tgt: str) -> str:
  return f"covost2_en_{tgt}"


@gin.configurable
def covost2_cache_dir(tgt: str, cache_dir: Optional[str] = None) -> str:
  """Prepared TFRecords of En->tgt: gin `cache_dir` (one pair), else $COVOST2_CACHE/covost2_en_tgt."""
  if cache_dir:
    return cache_dir
  root = os.environ.get("COVOST2_CACHE", os.path.join(".", "data", "covost2"))
  return os.path.join(root, task_name(tgt))


@gin.configurable
def covost2_vocab_path(tgt: str, path: Optional[str] = None) -> str:
  """The target SentencePiece model: gin `path`, else <cache dir>/spm_target.model."""
  return path or os.path.join(covost2_cache_dir(tgt), "spm_target.model")


class _CovostSource(seqio.TFExampleDataSource):
  """Prepared CoVoST records (the prepared schema plus `translation`), located lazily."""

  def __init__(self, tgt: str):
    self._tgt = tgt
    super().__init__(
        split_to_filepattern=sources.LazyPatterns(functools.partial(_pattern, tgt),
                                                  tuple(TASK_SPLITS)),
        feature_description=FEATURE_DESCRIPTION)

  def list_shards(self, split: str):
    files = super().list_shards(split)
    if not files:
      raise FileNotFoundError(
          f"no files match {_pattern(self._tgt, split)}: prepare them with `python -m "
          f"slam_jax.data.covost --tgt {self._tgt} --covost_dir ... --clips_dir ... "
          f"--out {covost2_cache_dir(self._tgt)}`")
    return files


def _pattern(tgt: str, split: str) -> str:
  return covost_lib.prepare_lib.file_pattern(covost2_cache_dir(tgt), TASK_SPLITS[split])


def _raw(ds: tf.data.Dataset) -> tf.data.Dataset:
  return ds.map(lambda ex: {"id": ex["id"],
                            "audio": tf.io.decode_raw(ex["audio"], tf.int16, little_endian=True),
                            st.TARGET: ex["translation"]},
                num_parallel_calls=tf.data.AUTOTUNE)


def register_covost2_tasks() -> None:
  """(Re)registers covost2_en_{de,ca,ar,tr}."""
  for tgt in covost_lib.TARGETS:
    vocabulary = common.make_vocabulary(functools.partial(covost2_vocab_path, tgt))
    st.register_seq2seq_task(task_name(tgt), _CovostSource(tgt), vocabulary, _raw,
                             st_metrics.METRIC_FNS)


register_covost2_tasks()
