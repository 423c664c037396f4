r"""Evaluation of a fine-tuned model on a seqio task's split with the task's `metric_fns`.

  python -m slam_jax.evaluate --gin_file=gin/finetune/demo_ctc.gin \
      --checkpoint=runs/ctc [--split=validation] [--max_examples=N] [--output=metrics.json]

The gin file is the fine-tuning experiment (it builds the model and names the task); the
checkpoint is the fine-tuning MODEL_DIR (newest step) or one step directory. Predictions go
through `model.predict` (jitted) and `model.postprocess` (host: CTC decoding, label names),
targets through `model.targets`; then every function in the task's `metric_fns` is called as
seqio's Evaluator calls it, `fn(targets, predictions) -> {name: value}`. Prints the metrics and
writes them (with a few examples) as JSON.
"""

import json
import logging
import os
import sys
from typing import Dict, Mapping, Optional, Sequence

import gin
import jax
import numpy as np

from slam_jax.finetune import evaluation as evaluation_lib


@gin.configurable(denylist=["checkpoint", "split", "max_examples", "output"])
def evaluate(*, model=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             feature_lengths: Mapping[str, int] = gin.REQUIRED, batch_size: int = 16,
             checkpoint: str = "", split: str = "validation",
             max_examples: Optional[int] = None, output: Optional[str] = None,
             num_examples_in_output: int = 20) -> Dict[str, float]:
  """Restores `checkpoint`'s params into `model` and scores them (see module docstring)."""
  from slam_jax.finetune import restore as restore_lib  # pylint: disable=g-import-not-at-top
  if not checkpoint:
    raise ValueError("Give --checkpoint=<fine-tuning MODEL_DIR or step dir>")
  shapes, dtypes = model.input_shapes_and_types(batch_size, feature_lengths)
  from slam_jax import partitioning as partitioning_lib  # pylint: disable=g-import-not-at-top
  abstract = partitioning_lib.unbox(jax.eval_shape(
      lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes, dtypes)))["params"]
  params = restore_lib.restore_params(checkpoint, abstract)
  results, examples = evaluation_lib.evaluate_params(
      model, params, mixture_or_task_name, feature_lengths=feature_lengths,
      batch_size=batch_size, split=split, max_examples=max_examples)
  print(f"[evaluate] {mixture_or_task_name}:{split} "
        f"{evaluation_lib.format_metrics(results)}", flush=True)
  if output is None:
    step_dir, _ = restore_lib.find_checkpoint(checkpoint)
    output = os.path.join(os.path.dirname(os.path.dirname(step_dir)),
                          f"eval_{mixture_or_task_name}_{split}.json")
  with open(output, "w") as f:
    json.dump({"task": mixture_or_task_name, "split": split, "checkpoint": checkpoint,
               "metrics": results, "examples": examples[:num_examples_in_output]}, f, indent=1)
  print(f"[evaluate] wrote {output}", flush=True)
  return results


def parse_flags(argv: Sequence[str]):
  from slam_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  gin_files, bindings, options = [], [], {}
  for arg in argv:
    if train_lib.parse_gin_flag(arg, gin_files, bindings):
      continue
    key, _, value = arg.lstrip("-").partition("=")
    if key in ("checkpoint", "split", "output") and value:
      options[key] = value
    elif key == "max_examples" and value:
      options[key] = int(value)
    elif arg in ("-h", "--help"):
      print(__doc__)
      sys.exit(0)
    else:
      raise ValueError(f"Unknown flag {arg!r}; expected --gin_file=, --gin.KEY=VALUE, "
                       "--checkpoint=, --split=, --max_examples=, --output=")
  if not gin_files:
    raise ValueError("Give --gin_file=gin/finetune/<experiment>.gin")
  return gin_files, bindings, options


def main(argv: Sequence[str]) -> Dict[str, float]:
  from slam_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  from slam_jax.finetune import train as finetune_lib  # pylint: disable=g-import-not-at-top,unused-import
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  jax.config.update("jax_threefry_partitionable", True)
  gin_files, bindings, options = parse_flags(argv)
  train_lib.parse_gin(gin_files, bindings)
  return evaluate(**options)


if __name__ == "__main__":
  from slam_jax import evaluate as _evaluate_module  # pylint: disable=g-import-not-at-top
  _evaluate_module.main(sys.argv[1:])
