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
