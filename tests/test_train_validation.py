"""EVAL_EVERY: validation with SlamModel.eval_fn during pre-training (slam_jax/train.py)."""
import numpy as np

from slam_jax import train as train_lib


def test_pretraining_reports_validation(tmp_path):
  train_lib.parse_gin(["gin/experiments/test_tiny.gin"], [
      f"MODEL_DIR = '{tmp_path}'", "TRAIN_STEPS = 3",
      "slam_jax.train.train.eval_every = 2",
      "slam_jax.train.train.make_eval_data = @slam_jax.data.synthetic.make_synthetic_data",
      "slam_jax.train.train.eval_batches = 1"])
  result = train_lib.train()
  assert [int(v["step"]) for v in result.validation] == [2, 3]
  for row in result.validation:
    assert np.isfinite(row["loss"]) and "stm/accuracy" in row and "text_mlm/loss" in row
  # Same batches, fixed masks, no dropout: only the params differ between the two evaluations.
  assert result.validation[0]["loss"] != result.validation[1]["loss"]
  assert "validation at step 3" in train_lib.summarize(result)
