"""Text-only tasks (TEXT rows).

  c4_en_text   TFDS `c4/en:3.1.0` field "text" (data dir: gin `c4_data_dir`, else
               $TFDS_DATA_DIR); never downloads, build it beforehand.
  text_files   lines of plain text files: gin `text_file_patterns.train` / `.validation`
               (else $SLAM_TEXT_TRAIN / $SLAM_TEXT_VALIDATION).
"""

import os
from typing import Optional

import gin

from slam_jax import types
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from tasks import common

C4_TFDS_NAME = "c4/en:3.1.0"
C4_TASK = "c4_en_text"
TEXT_FILES_TASK = "text_files"


@gin.configurable
def c4_data_dir(data_dir: Optional[str] = None) -> Optional[str]:
  """TFDS data dir holding c4/en: gin, else $TFDS_DATA_DIR, else None (TFDS default)."""
  return data_dir or os.environ.get("TFDS_DATA_DIR") or None


@gin.configurable
def text_file_patterns(train: Optional[str] = None, validation: Optional[str] = None):
  """Glob patterns of the `text_files` task per split."""
  return {"train": train or os.environ.get("SLAM_TEXT_TRAIN", ""),
          "validation": validation or os.environ.get("SLAM_TEXT_VALIDATION", "")}


def _text_pattern(split: str) -> str:
  return text_file_patterns()[split]


def register_text_tasks() -> None:
  """(Re)registers c4_en_text and text_files."""
  common.register_task(
      C4_TASK, sources.TfdsSource(C4_TFDS_NAME, {"train": "train", "validation": "validation"},
                                  c4_data_dir),
      types.KIND_TEXT, common.VOCABULARY, prep.from_text_field,
      shuffle_buffer_size=common.TEXT_SHUFFLE_BUFFER)
  common.register_task(
      TEXT_FILES_TASK,
      sources.TextLinesSource(_text_pattern, hint="bind text_file_patterns.train/validation"),
      types.KIND_TEXT, common.VOCABULARY, prep.from_text_lines,
      shuffle_buffer_size=common.TEXT_SHUFFLE_BUFFER)


register_text_tasks()
