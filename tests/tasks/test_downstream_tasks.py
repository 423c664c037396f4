"""Downstream tasks: GLUE through TFDS (mock data), label features and metric_fns."""
import numpy as np
import seqio
import tensorflow_datasets as tfds

from slam_jax import metrics
from slam_jax.finetune import data as data_lib


def test_glue_sst2_with_mock_data(demo_tasks):
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from tasks import common, downstream  # pylint: disable=g-import-not-at-top
  vocab = common.make_vocabulary(lambda: f"{demo_tasks}/vocab/spm.model")
  downstream.register_glue_tasks(vocab)
  task = seqio.get_mixture_or_task("glue_sst2")
  assert task.metric_fns == [metrics.accuracy]
  assert task.output_features["label"].vocabulary.class_names == ("negative", "positive")
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    batch = next(data_lib.eval_batches("glue_sst2", batch_size=4,
                                       feature_lengths={"speech": 8, "text": 16},
                                       extra_features=("label",)))
  assert batch["label"].shape == (4,) and set(np.unique(batch["label"])) <= {0, 1}
  assert (batch["text_segment_ids"].sum(axis=1) > 0).all()


def test_demo_downstream_tasks(demo_tasks):
  from tasks import downstream  # pylint: disable=g-import-not-at-top
  downstream.register_demo_downstream_tasks(demo_tasks)
  assert seqio.get_mixture_or_task("slam_demo_asr").metric_fns == [metrics.wer]
  batch = next(data_lib.eval_batches("slam_demo_asr_chars", batch_size=2,
                                     feature_lengths={"speech": 100, "text": 128}))
  assert (batch["kind"] == 2).all() and batch["text_tokens"].max() < 40
