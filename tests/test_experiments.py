"""Every gin experiment parses, names a registered seqio task/mixture and a sane model."""

import glob
import os

import gin
import pytest
import seqio

from slam_jax import train as train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, "gin", "experiments", "*.gin")))


def test_the_paper_experiments_exist():
  names = {os.path.basename(p) for p in EXPERIMENTS}
  assert {"slam_demo_tiny.gin", "w2v_bert_only.gin", "bert_only.gin", "slam.gin",
          "slam_tlm.gin", "slam_tlm_stm.gin", "test_tiny.gin"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_experiment_parses_and_names_a_registered_task(path):
  gin.clear_config()
  try:
    train_lib.parse_gin([path], ["MODEL_DIR = '/tmp/unused'"])
    name = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
    if name != "synthetic":
      seqio.get_mixture_or_task(name)  # Raises if not registered.
    assert gin.query_parameter("%TRAIN_STEPS") > 0
    assert gin.query_parameter("%BATCH_SIZE") > 0
  finally:
    gin.clear_config()


def test_stage_one_experiments_switch_off_paired_objectives():
  gin.clear_config()
  try:
    train_lib.parse_gin([os.path.join(ROOT, "gin", "experiments", "slam.gin")],
                        ["MODEL_DIR = '/tmp/unused'"])
    from slam_jax.losses import compose  # pylint: disable=g-import-not-at-top
    schedule = compose.LossWeightSchedule()
    assert schedule.stage2_start_step >= 10**9
  finally:
    gin.clear_config()


def test_from_w2v_bert_experiment_matches_the_import():
  """The w2v-BERT 2.0 stage-2 experiment uses the imported architecture and its Kaldi fbank."""
  gin.clear_config()
  try:
    train_lib.parse_gin([os.path.join(ROOT, "gin", "experiments",
                                      "slam_tlm_stm_from_w2v_bert.gin")],
                        ["MODEL_DIR = '/tmp/unused'", "W2V_BERT_CHECKPOINT = '/tmp/ckpt'"])
    from slam_jax import convert  # pylint: disable=g-import-not-at-top
    from slam_jax.data import features  # pylint: disable=g-import-not-at-top
    from slam_jax.models import config as config_lib  # pylint: disable=g-import-not-at-top
    assert features.LogMelConfig() == features.kaldi_fbank_config()
    assert str(gin.query_parameter("slam_jax.train.train.init_encoder_from")) == (
        "%W2V_BERT_CHECKPOINT")
    assert gin.query_parameter("%W2V_BERT_CHECKPOINT") == "/tmp/ckpt"
    config = config_lib.make_encoder_config()
    convert.check_w2v_bert_config(config)
    assert config == config_lib.get_preset("w2v_bert_2_0", dropout_rate=0.1, dtype="bfloat16",
                                           remat_policy="dots_with_no_batch_dims_saveable")
  finally:
    gin.clear_config()
