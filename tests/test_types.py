"""Tests for slam_jax/types.py: the model-batch contract's shapes and dtypes."""
import numpy as np
import pytest

from slam_jax import types


def test_model_batch_spec_shapes_and_dtypes():
  shapes, dtypes = types.model_batch_spec(3, {"speech": 40, "text": 7}, num_mel_bins=16)
  assert set(shapes) == set(types.MODEL_FEATURES) == set(dtypes)
  assert shapes[types.SPEECH_FEATURES] == (3, 40, 16)
  assert shapes[types.SPEECH_MASK] == (3, 40)
  assert shapes[types.TEXT_TOKENS] == shapes[types.TEXT_POSITIONS] == (3, 7)
  assert shapes[types.KIND] == (3,)
  assert dtypes[types.SPEECH_FEATURES] == np.float32
  assert all(dtypes[k] == np.int32 for k in types.MODEL_FEATURES if k != types.SPEECH_FEATURES)


def test_model_batch_spec_names_the_missing_length():
  with pytest.raises(ValueError, match="missing \\['text'\\]"):
    types.model_batch_spec(2, {"speech": 40})
