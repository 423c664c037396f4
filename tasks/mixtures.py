"""The paper's pre-training mixtures (SLAM, arXiv 2110.10329).

  slam_pretrain_stage1   c4_en_text + librilight_speech          (stage 1: text + speech)
  slam_pretrain          + librispeech_paired                    (stage 2: adds TLM/STM data)

Rates are relative example counts before packing (gin `pretrain_mixture_rates`); with packed
text, text's share of rows falls by its packing factor (see slam_jax/data/converters.py).
"""

import functools
from typing import Dict

import gin

from tasks import common
from tasks import librilight
from tasks import librispeech
from tasks import text

STAGE1 = "slam_pretrain_stage1"
FULL = "slam_pretrain"


@gin.configurable
def pretrain_mixture_rates(text: float = 1.0, speech: float = 1.0,
                           paired: float = 1.0) -> Dict[str, float]:
  """Relative example rates of the pre-training mixtures."""
  return {"text": text, "speech": speech, "paired": paired}


def _rate(kind: str, unused_task) -> float:
  return float(pretrain_mixture_rates()[kind])


def register_pretrain_mixtures() -> None:
  members = [(text.C4_TASK, "text"), (librilight.LIBRILIGHT_TASK, "speech")]
  common.register_mixture(STAGE1, [(t, functools.partial(_rate, k)) for t, k in members])
  members.append((librispeech.PAIRED_TASK, "paired"))
  common.register_mixture(FULL, [(t, functools.partial(_rate, k)) for t, k in members])


register_pretrain_mixtures()
