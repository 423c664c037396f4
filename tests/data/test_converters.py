"""SlamFeatureConverter: fixed shapes, masks, segment ids; packing of text rows only."""
import numpy as np
import pytest
import tensorflow as tf

from slam_jax import types
from slam_jax.data import converters

LENGTHS = {"speech": 12, "text": 8}


def _rows():
  """text, speech, paired, text, text, speech(long), text rows."""
  def row(kind, frames, tokens):
    return {"speech": np.full([frames, 80], 1.0 + frames, np.float32),
            "text": np.arange(3, 3 + tokens, dtype=np.int32), "kind": np.int32(kind)}
  spec = [(types.KIND_TEXT, 0, 3), (types.KIND_SPEECH, 5, 0), (types.KIND_PAIRED, 7, 4),
          (types.KIND_TEXT, 0, 2), (types.KIND_TEXT, 0, 4), (types.KIND_SPEECH, 12, 0),
          (types.KIND_TEXT, 0, 8)]
  return [row(*s) for s in spec]


def _dataset(rows):
  return tf.data.Dataset.from_generator(
      lambda: iter(rows), output_signature={
          "speech": tf.TensorSpec([None, 80], tf.float32), "text": tf.TensorSpec([None], tf.int32),
          "kind": tf.TensorSpec([], tf.int32)})


def _convert(rows, **kwargs):
  ds = converters.SlamFeatureConverter(**kwargs)(_dataset(rows), LENGTHS)
  return list(ds.as_numpy_iterator())


def test_unpacked_rows():
  out = _convert(_rows())
  assert [o["kind"] for o in out] == [0, 1, 2, 0, 0, 1, 0]
  for o in out:
    assert o["speech_features"].shape == (12, 80) and o["text_tokens"].shape == (8,)
  text, speech, paired = out[0], out[1], out[2]
  assert text["speech_mask"].sum() == 0 and not text["speech_features"].any()
  np.testing.assert_array_equal(text["text_tokens"], [3, 4, 5, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(text["text_segment_ids"], [1, 1, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(text["text_positions"], [0, 1, 2, 0, 0, 0, 0, 0])
  assert speech["speech_mask"].sum() == 5 and not speech["text_tokens"].any()
  assert not speech["text_segment_ids"].any() and not speech["speech_features"][5:].any()
  assert paired["speech_mask"].sum() == 7 and paired["text_segment_ids"].tolist() == [1] * 4 + [0] * 4


def test_packing_text_rows_only():
  out = _convert(_rows(), pack=True, pack_window=3)
  kinds = [int(o["kind"]) for o in out]
  # Non-text rows pass at once; the first 3 text rows (3 + 2 + 4 tokens) are packed into two
  # rows when the window fills; the last text row is flushed at the end.
  assert kinds == [1, 2, 0, 0, 1, 0]
  packed = out[2]
  np.testing.assert_array_equal(packed["text_tokens"], [3, 4, 5, 3, 4, 0, 0, 0])
  np.testing.assert_array_equal(packed["text_segment_ids"], [1, 1, 1, 2, 2, 0, 0, 0])
  np.testing.assert_array_equal(packed["text_positions"], [0, 1, 2, 0, 1, 0, 0, 0])
  assert packed["speech_mask"].sum() == 0
  np.testing.assert_array_equal(out[3]["text_segment_ids"], [1, 1, 1, 1, 0, 0, 0, 0])
  # Every text token survives packing.
  text_tokens = sorted(t for o in out if o["kind"] == 0 for t in o["text_tokens"] if t)
  want = sorted(t for r in _rows() if r["kind"] == 0 for t in r["text"])
  assert text_tokens == want
  unpacked = _convert(_rows())
  for a, b in zip([o for o in out if o["kind"] != 0], [o for o in unpacked if o["kind"] != 0]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  batch = {k: np.stack([o[k] for o in out]) for k in out[0]}
  assert converters.packing_factor([batch]) == pytest.approx(4 / 3)


def test_missing_kind_is_a_clear_error():
  ds = tf.data.Dataset.from_tensors({"speech": tf.zeros([1, 80]), "text": tf.zeros([1], tf.int32)})
  with pytest.raises(ValueError, match="kind"):
    converters.SlamFeatureConverter()(ds, LENGTHS)


def test_model_feature_lengths():
  lengths = converters.SlamFeatureConverter().get_model_feature_lengths(LENGTHS)
  assert lengths[types.SPEECH_FEATURES] == 12 and lengths[types.TEXT_POSITIONS] == 8
  assert set(lengths) == set(types.MODEL_FEATURES)
