"""Demo tasks over the offline corpus of `python -m slam_jax.data.demo --out DIR`.

  slam_demo_text     TEXT rows    DIR/text/SPLIT/**/*.trans.txt
  slam_demo_speech   SPEECH rows  DIR/prepared/speech/SPLIT.tfrecord-*
  slam_demo_paired   PAIRED rows  DIR/prepared/paired/SPLIT.tfrecord-*
  slam_demo          mixture of the three, rates from `demo_mixture_rates` (gin)
  slam_demo_stage1   text + speech only (SLAM's first stage), same rates

DIR is `demo_data_dir()` (gin `demo_data_dir.data_dir`, else $SLAM_DATA_DIR, else ./data/demo),
read each time a dataset is built; the vocabulary is DIR/vocab/spm.model.
`register_demo_tasks(data_dir)` re-registers everything for a fixed directory (tests).
"""

import functools
import os
from typing import Dict, Optional

import gin

from slam_jax import types
from slam_jax.data import prepare as prepare_lib
from slam_jax.data import preprocessors as prep
from slam_jax.data import sources
from tasks import common

TEXT_TASK = "slam_demo_text"
SPEECH_TASK = "slam_demo_speech"
PAIRED_TASK = "slam_demo_paired"
MIXTURE = "slam_demo"
STAGE1_MIXTURE = "slam_demo_stage1"
SPLITS = ("train", "validation")


@gin.configurable
def demo_mixture_rates(text: float = 1.0, speech: float = 1.0,
                       paired: float = 1.0) -> Dict[str, float]:
  """Relative example rates of the demo mixture (before packing; see converters)."""
  return {TEXT_TASK: text, SPEECH_TASK: speech, PAIRED_TASK: paired}


def _rate(task_name: str, unused_task) -> float:
  return float(demo_mixture_rates()[task_name])


def _dir(data_dir: Optional[str]) -> str:
  return os.path.abspath(data_dir) if data_dir else common.demo_data_dir()


def _text_pattern(data_dir: Optional[str], split: str) -> str:
  return os.path.join(_dir(data_dir), "text", split, "*", "*", "*.trans.txt")


def _prepared_pattern(data_dir: Optional[str], name: str, split: str) -> str:
  return prepare_lib.file_pattern(os.path.join(_dir(data_dir), "prepared", name), split)


def _vocab_path(data_dir: Optional[str]) -> str:
  return os.path.join(_dir(data_dir), "vocab", "spm.model")


def register_demo_tasks(data_dir: Optional[str] = None, text_shuffle_buffer: int = 1000,
                        speech_shuffle_buffer: int = 128) -> None:
  """(Re)registers the demo tasks and mixtures.

  Args:
    data_dir: the corpus directory; None resolves `demo_data_dir()` each time a dataset is
      built.
    text_shuffle_buffer: examples in the text task's shuffle buffer.
    speech_shuffle_buffer: examples in each speech task's shuffle buffer.
  """
  hint = ("build the demo corpus: `python -m slam_jax.data.demo --out DIR` and set "
          "$SLAM_DATA_DIR or gin demo_data_dir.data_dir")
  vocabulary = common.make_vocabulary(functools.partial(_vocab_path, data_dir))
  common.register_task(
      TEXT_TASK,
      sources.TextLinesSource(functools.partial(_text_pattern, data_dir), SPLITS, hint=hint),
      types.KIND_TEXT, vocabulary, functools.partial(prep.from_text_lines, strip_ids=True),
      shuffle_buffer_size=text_shuffle_buffer)
  for task, name, kind in ((SPEECH_TASK, "speech", types.KIND_SPEECH),
                           (PAIRED_TASK, "paired", types.KIND_PAIRED)):
    common.register_task(
        task,
        sources.PreparedSpeechSource(functools.partial(_prepared_pattern, data_dir, name),
                                     SPLITS, hint=hint),
        kind, vocabulary, prep.from_prepared, shuffle_buffer_size=speech_shuffle_buffer)
  common.register_mixture(MIXTURE, [(t, functools.partial(_rate, t))
                                    for t in (TEXT_TASK, SPEECH_TASK, PAIRED_TASK)])
  common.register_mixture(STAGE1_MIXTURE, [(t, functools.partial(_rate, t))
                                           for t in (TEXT_TASK, SPEECH_TASK)])


register_demo_tasks()
