"""Classifier: bad labels are named; the demo label is balanced and not given away by a token."""
import collections

import numpy as np
import pytest

from slam_jax import types
from slam_jax.data.demo import classification
from slam_jax.finetune import classifier
from slam_jax.models import encoder as encoder_lib


def test_label_outside_classes_is_an_error():
  model = classifier.ClassifierModel(encoder_lib.get_preset("tiny"), ("a", "b"))
  batch = {types.TEXT_TOKENS: np.ones((3, 4), np.int32),
           types.TEXT_SEGMENT_IDS: np.ones((3, 4), np.int32), types.KIND: np.zeros(3, np.int32),
           classifier.LABEL: np.array([0, 2, 1], np.int32)}
  with pytest.raises(ValueError, match=r"Labels \[2\].*outside"):
    model.check_batch(batch)
  batch[classifier.LABEL] = np.array([0, 1, 1], np.int32)
  model.check_batch(batch)
  assert model.targets(batch) == ["a", "b", "b"]


def test_demo_label_is_balanced_and_no_token_gives_it_away():
  rows = classification.examples(seed=1, n=2000)
  labels = np.array([l for _, l in rows])
  assert 0.45 < labels.mean() < 0.55
  counts = [collections.Counter(w for s, l in rows if l == c for w in set(s.split()))
            for c in (0, 1)]
  n = [int((labels == c).sum()) for c in (0, 1)]
  # Every frequent word occurs at about the same rate in both classes.
  for word in set(counts[0]) | set(counts[1]):
    a, b = counts[0][word] / n[0], counts[1][word] / n[1]
    if a + b > 0.1:
      assert abs(a - b) < 0.05, word


def test_classifier_loss_predict_and_postprocess():
  import jax  # pylint: disable=g-import-not-at-top
  from slam_jax import partitioning  # pylint: disable=g-import-not-at-top
  model = classifier.ClassifierModel(encoder_lib.get_preset("tiny", dropout_rate=0.0),
                                     ("a", "b", "c"))
  tokens = np.array([[5, 6, 7, 1], [8, 9, 1, 0]], np.int32)
  batch = {types.TEXT_TOKENS: tokens, types.TEXT_SEGMENT_IDS: (tokens > 0).astype(np.int32),
           types.TEXT_POSITIONS: np.tile(np.arange(4, dtype=np.int32), (2, 1)),
           types.KIND: np.zeros(2, np.int32), classifier.LABEL: np.array([2, 0], np.int32)}
  params = partitioning.unbox(model.init(jax.random.PRNGKey(0), batch))
  assert set(params) == {"encoder", "head"}
  loss, metrics = jax.jit(lambda p, b: model.loss_fn(p, b, None))(params, batch)
  preds = jax.device_get(jax.jit(model.predict)(params, batch))
  # Cross-entropy of the predicted logits, recomputed in numpy.
  logits = np.asarray(preds["logits"], np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(float(loss), -np.mean(logp[[0, 1], [2, 0]]), rtol=1e-5)
  assert model.postprocess(preds, batch) == [("a", "b", "c")[i] for i in logits.argmax(-1)]
  assert 0.0 <= float(metrics["classifier/accuracy"]) <= 1.0
