"""LibriSpeech through TFDS (`librispeech/default`, int16 audio at 16 kHz), two views:

  librispeech_paired   PAIRED rows: log-mel + transcript (TLM/STM data)
  librispeech_speech   SPEECH rows: log-mel only

Splits: train = train_clean100 + train_clean360 + train_other500 (960 h), validation = dev_clean
(gin `librispeech_splits`). The TFDS data dir is `librispeech_data_dir()` (gin, else
$TFDS_DATA_DIR, else TFDS's default). Nothing is downloaded: prepare the dataset beforehand with
`tfds build librispeech` (or use a LibriSpeech directory with slam_jax.data.prepare and the
`librispeech_prepared_*` tasks in tasks/librilight.py).
"""

import os
from typing import Dict, Optional

import gin

from slam_jax import types
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from tasks import common

TFDS_NAME = "librispeech/default:2.1.1"
PAIRED_TASK = "librispeech_paired"
SPEECH_TASK = "librispeech_speech"


@gin.configurable
def librispeech_data_dir(data_dir: Optional[str] = None) -> Optional[str]:
  """TFDS data dir holding librispeech: gin, else $TFDS_DATA_DIR, else None (TFDS default)."""
  return data_dir or os.environ.get("TFDS_DATA_DIR") or None


def librispeech_splits() -> Dict[str, str]:
  return {"train": "train_clean100+train_clean360+train_other500", "validation": "dev_clean"}


def register_librispeech_tasks() -> None:
  """(Re)registers the LibriSpeech TFDS tasks."""
  for task, kind in ((PAIRED_TASK, types.KIND_PAIRED), (SPEECH_TASK, types.KIND_SPEECH)):
    common.register_task(
        task, sources.TfdsSource(TFDS_NAME, librispeech_splits(), librispeech_data_dir), kind,
        common.VOCABULARY, prep.from_tfds_librispeech,
        shuffle_buffer_size=common.SPEECH_SHUFFLE_BUFFER)


register_librispeech_tasks()
