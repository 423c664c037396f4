"""Names and shapes every part of slam_jax agrees on (the contract between data, model and losses).

A *model batch* is a dict of fixed-shape arrays produced by `slam_jax.data.converters`. Every
example row carries a speech slot and a text slot; its `kind` says which are filled:

  kind     speech slot          text slot
  TEXT     empty (mask 0)       tokens (possibly several packed examples, segment ids 1, 2, ...)
  SPEECH   log-mel frames       empty (segment ids 0)
  PAIRED   log-mel frames       the transcript (segment id 1)
"""

from typing import Any, Dict, Mapping, Tuple

import numpy as np

# Example kinds: the `kind` feature.
KIND_TEXT = 0
KIND_SPEECH = 1
KIND_PAIRED = 2
KIND_NAMES = {KIND_TEXT: "text", KIND_SPEECH: "speech", KIND_PAIRED: "paired"}

# Model-batch feature names.
SPEECH_FEATURES = "speech_features"  # float32 [batch, frames, num_mel_bins] normalised log-mel
SPEECH_MASK = "speech_mask"  # int32 [batch, frames]; 1 = real frame, 0 = padding
TEXT_TOKENS = "text_tokens"  # int32 [batch, length]; 0 = padding (seqio's PAD id)
TEXT_SEGMENT_IDS = "text_segment_ids"  # int32 [batch, length]; 0 = padding, 1.. = packed example
TEXT_POSITIONS = "text_positions"  # int32 [batch, length]; position inside its own segment
KIND = "kind"  # int32 [batch]; one of KIND_*

MODEL_FEATURES = (SPEECH_FEATURES, SPEECH_MASK, TEXT_TOKENS, TEXT_SEGMENT_IDS, TEXT_POSITIONS, KIND)

# Task-level (seqio) feature names, before the converter.
TASK_SPEECH = "speech"  # float32 [frames, num_mel_bins] (seqio.ContinuousFeature(rank=2))
TASK_TEXT = "text"  # int32 [length] SentencePiece ids (EOS appended)
TASK_KIND = "kind"  # int32 [1] (the converter also takes a scalar)

NUM_MEL_BINS = 80
SAMPLE_RATE = 16000

Batch = Dict[str, np.ndarray]


def model_batch_spec(batch_size: int, feature_lengths: Mapping[str, int],
                     num_mel_bins: int = NUM_MEL_BINS
                     ) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, Any]]:
  """Shapes and dtypes of a model batch for {"speech": frames, "text": tokens}.

  What trainers and t5x's `get_initial_variables` / `TrainStateInitializer` build their abstract
  batch from. Raises ValueError naming the missing key when either length is absent.
  """
  missing = {TASK_SPEECH, TASK_TEXT} - set(feature_lengths)
  if missing:
    raise ValueError(f"feature_lengths needs keys 'speech' and 'text'; missing {sorted(missing)}")
  frames, length = int(feature_lengths[TASK_SPEECH]), int(feature_lengths[TASK_TEXT])
  shapes = {
      SPEECH_FEATURES: (batch_size, frames, num_mel_bins),
      SPEECH_MASK: (batch_size, frames),
      TEXT_TOKENS: (batch_size, length),
      TEXT_SEGMENT_IDS: (batch_size, length),
      TEXT_POSITIONS: (batch_size, length),
      KIND: (batch_size,),
  }
  dtypes = {k: np.dtype(np.int32) for k in shapes}
  dtypes[SPEECH_FEATURES] = np.dtype(np.float32)
  return shapes, dtypes
