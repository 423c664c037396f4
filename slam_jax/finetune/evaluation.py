"""Evaluation of a DownstreamModel's params on a seqio task split, with the task's metric_fns.

The library half of `python -m slam_jax.evaluate` (slam_jax/evaluate.py), also called by the
fine-tuning loop for its periodic validation; kept apart so neither imports the other.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from slam_jax import types
from slam_jax.finetune import data as data_lib
from slam_jax.finetune import task_model


def evaluate_params(model: task_model.DownstreamModel, params, task_name: str, *,
                    feature_lengths: Mapping[str, int], batch_size: int = 16,
                    split: str = "validation", max_examples: Optional[int] = None,
                    predict_fn=None, loss_fn=None) -> Tuple[Dict[str, float], List[Dict[str, Any]]]:
  """Scores `params` on `split` of `task_name`.

  Returns:
    (metrics: the task's metric_fns' outputs + 'loss' (mean eval loss) + 'examples',
     [{"target": ..., "prediction": ...}] for every example in order).
  """
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task(task_name)
  predict_fn = predict_fn or jax.jit(model.predict)
  loss_fn = loss_fn or jax.jit(lambda p, b: model.loss_fn(p, b, None))
  targets, predictions, losses, weights = [], [], [], []
  for batch in data_lib.eval_batches(task_name, batch_size=batch_size,
                                     feature_lengths=feature_lengths,
                                     extra_features=tuple(model.extra_features), split=split,
                                     max_examples=max_examples):
    model.check_batch(batch)
    valid = batch[task_model.VALID].astype(bool)
    preds = jax.device_get(predict_fn(params, batch))
    outputs = model.postprocess(preds, batch)
    wanted = model.targets(batch)
    targets += [t for t, ok in zip(wanted, valid) if ok]
    predictions += [p for p, ok in zip(outputs, valid) if ok]
    loss, _ = loss_fn(params, batch)
    losses.append(float(loss))
    weights.append(int(valid.sum()))
  if not targets:
    raise ValueError(f"Task {task_name!r} split {split!r} gave no examples to evaluate")
  results: Dict[str, float] = {}
  for fn in task.metric_fns:
    results.update({k: float(v) for k, v in fn(targets, predictions).items()})
  results["loss"] = float(np.average(losses, weights=weights))
  results["examples"] = float(len(targets))
  examples = [{"target": t, "prediction": p} for t, p in zip(targets, predictions)]
  return results, examples


def format_metrics(results: Mapping[str, float]) -> str:
  return " | ".join(f"{k} {v:.4g}" for k, v in sorted(results.items()))
