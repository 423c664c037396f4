"""In-pipeline drop/trim rules with counters (what happens to bad examples inside tf.data).

Counters are int64 `tf.Variable`s keyed by "TASK/REASON" and incremented by the dataset
functions as examples pass (so they count what the pipeline has *processed*, which runs ahead of
what the trainer consumed by the prefetch depth). Read them with `counts()`; `reset()` zeroes
them. The ids of the first MAX_LOGGED examples of each counter go to stderr. They hold no data state: iterator checkpoints skip them (their datasets set
`ExternalStatePolicy.WARN`).

Reasons: "too_short" (fewer than `min_speech_frames`), "speech_too_long" (more frames than the
limit: dropped or trimmed), "empty_text", "text_too_long" (dropped or trimmed), "unencodable"
(characters the vocabulary maps to UNK: dropped, stripped or kept).
"""

import dataclasses
import sys
import threading
from typing import Dict, Optional

import gin
import tensorflow as tf

LENGTH_POLICIES = ("trim", "drop")
EMPTY_POLICIES = ("drop", "keep")
UNENCODABLE_POLICIES = ("keep", "drop", "strip")
MAX_LOGGED = 5  # Offending example ids printed per counter.


@gin.configurable
@dataclasses.dataclass(frozen=True)
class FilterConfig:
  """What the task pipelines do with examples that do not fit (counted either way).

  Attributes:
    min_speech_frames: utterances with fewer log-mel frames are dropped (0 frames = < 25 ms).
    max_speech_frames: the frame limit; None = the task feature length "speech".
    long_speech: "trim" (keep the first max frames; the audio is cut before the front end) or
      "drop".
    empty_text: "drop" or "keep" text/paired examples whose text is empty after normalisation.
    max_text_tokens: the token limit including EOS; None = the task feature length "text".
    long_text: "trim" (keep the first tokens, then EOS) or "drop".
    unencodable: "keep" (UNK ids), "drop" the example, or "strip" the characters.
  """
  min_speech_frames: int = 4
  max_speech_frames: Optional[int] = None
  long_speech: str = "trim"
  empty_text: str = "drop"
  max_text_tokens: Optional[int] = None
  long_text: str = "trim"
  unencodable: str = "keep"

  def __post_init__(self):
    for name, allowed in (("long_speech", LENGTH_POLICIES), ("long_text", LENGTH_POLICIES),
                          ("empty_text", EMPTY_POLICIES), ("unencodable", UNENCODABLE_POLICIES)):
      if getattr(self, name) not in allowed:
        raise ValueError(f"FilterConfig.{name}={getattr(self, name)!r}: use one of {allowed}")


_COUNTERS: Dict[str, tf.Variable] = {}
_LOCK = threading.Lock()


def counter(name: str) -> tf.Variable:
  """The int64 counter `name` (created on first use, outside any tf.function)."""
  with _LOCK:
    if name not in _COUNTERS:
      with tf.init_scope():
        _COUNTERS[name] = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name=name.replace("/", "__"))
    return _COUNTERS[name]


def counts(prefix: str = "") -> Dict[str, int]:
  """Current values of the counters whose names start with `prefix`."""
  with _LOCK:
    return {k: int(v.numpy()) for k, v in sorted(_COUNTERS.items()) if k.startswith(prefix)}


def reset(prefix: str = "") -> None:
  """Zeroes the counters whose names start with `prefix`."""
  with _LOCK:
    for k, v in _COUNTERS.items():
      if k.startswith(prefix):
        v.assign(0)


def count_where(name: str, condition: tf.Tensor, where: Optional[tf.Tensor] = None,
                max_logged: int = MAX_LOGGED) -> tf.Operation:
  """Op adding 1 to counter `name` when the scalar bool `condition` holds.

  With `where` (an example id), the first `max_logged` such examples are printed to stderr.
  """
  total = counter(name).assign_add(tf.cast(condition, tf.int64))
  if where is None:
    return tf.group(total)

  def log():
    tf.print("[slam_jax] filter", name, "example", where, output_stream=sys.stderr)
    return tf.constant(True)

  logged = tf.cond(tf.logical_and(condition, total <= max_logged), log,
                   lambda: tf.constant(False))
  return tf.group(total, logged)


def keep_and_count(name: str, drop: tf.Tensor, where: Optional[tf.Tensor] = None) -> tf.Tensor:
  """A `filter` predicate value: counts (and logs) `drop` under `name`, returns `not drop`."""
  with tf.control_dependencies([count_where(name, drop, where)]):
    return tf.logical_not(drop)
