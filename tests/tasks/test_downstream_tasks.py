"""Downstream tasks: GLUE through TFDS (mock data), label features and metric_fns."""
import os

import numpy as np
import pytest
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


def test_low_resource_gin_keeps_a_tenth_of_the_train_utterances(demo_tasks, monkeypatch):
  import gin  # pylint: disable=g-import-not-at-top
  from slam_jax.data import sources  # pylint: disable=g-import-not-at-top
  from tasks import downstream  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  downstream.register_demo_downstream_tasks(demo_tasks)
  source = seqio.get_mixture_or_task("slam_demo_asr_chars").source
  ids = lambda split: sorted(ex["id"] for ex in source.get_dataset(split, shuffle=False)
                             .as_numpy_iterator())
  full, valid = ids("train"), ids("validation")
  low = {}
  for fraction in (None, 0.5):  # the file's 0.1, then 0.5 (the tiny corpus has few utterances)
    override = [] if fraction is None else [
        f"tasks.downstream.demo_asr_train_fraction.fraction = {fraction}"]
    gin.clear_config()
    try:
      gin.parse_config_files_and_bindings(["gin/finetune/demo_ctc_low.gin"],
                                          ["MODEL_DIR = '/x'"] + override)
      low[downstream.demo_asr_train_fraction()] = ids("train")
      assert ids("validation") == valid  # held-out speakers untouched
    finally:
      gin.clear_config()
  assert set(low) == {0.1, 0.5}
  for fraction, kept in low.items():
    expected = sorted(ex["id"] for ex in sources.keep_fraction(
        source.get_dataset("train", shuffle=False), fraction).as_numpy_iterator())
    assert kept == expected and set(kept) < set(full)
  assert low[0.5]


def test_bad_train_fraction_names_the_binding():
  from tasks import downstream  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"demo_asr_train_fraction.fraction = 1.5: set it in"):
    downstream.demo_asr_train_fraction(1.5)
