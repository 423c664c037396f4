"""The fine-tuning and evaluate entry points end to end on the tiny demo corpus (2 steps)."""
import json
import os

import pytest

from slam_jax import evaluate
from slam_jax import train as train_lib

import tiny_demo  # tests/tiny_demo.py


@pytest.fixture()
def downstream_tasks(demo_tasks):
  from tasks import downstream  # pylint: disable=g-import-not-at-top
  downstream.register_demo_downstream_tasks(demo_tasks)
  return demo_tasks


TINY = ["PRETRAINED = None", "TRAIN_STEPS = 2", "BATCH_SIZE = 2", "EVAL_MAX_EXAMPLES = 2",
        'TASK_FEATURE_LENGTHS = {"speech": 160, "text": 40}', *tiny_demo.ENCODER_BINDINGS,
        "slam_jax.finetune.train.finetune.log_every = 1",
        "slam_jax.checkpoints.CheckpointConfig.async_save = False"]


def test_finetune_then_evaluate_end_to_end(downstream_tasks, tmp_path):
  from slam_jax.finetune import train as finetune_lib  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "ctc")
  train_lib.parse_gin(["gin/finetune/demo_ctc.gin"], TINY + [f"MODEL_DIR = '{model_dir}'"])
  result = finetune_lib.finetune()
  assert result.last_step == 2
  assert "wer" in result.final_validation and result.final_validation["examples"] == 2
  output = str(tmp_path / "eval.json")
  metrics = evaluate.main(["--gin_file=gin/finetune/demo_ctc.gin", f"--checkpoint={model_dir}",
                           "--max_examples=3", f"--output={output}"]
                          + [f"--gin.{b.replace(' = ', '=')}" for b in TINY]
                          + [f"--gin.MODEL_DIR='{model_dir}'"])
  assert metrics["examples"] == 3 and 0.0 <= metrics["wer"]
  with open(output) as f:
    written = json.load(f)
  assert written["metrics"]["wer"] == metrics["wer"] and written["examples"][0]["target"]


def test_finetune_refuses_pretrained_path_without_checkpoint(downstream_tasks, tmp_path):
  from slam_jax.finetune import train as finetune_lib  # pylint: disable=g-import-not-at-top
  train_lib.parse_gin(["gin/finetune/demo_ctc.gin"],
                      TINY[1:] + [f"MODEL_DIR = '{tmp_path / 'x'}'",
                                  f"PRETRAINED = '{tmp_path}'"])
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    finetune_lib.finetune()
