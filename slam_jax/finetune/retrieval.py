r"""Speech<->text retrieval from a pre-trained checkpoint alone (no fine-tuning): R@1/5/10.

  python -m slam_jax.finetune.retrieval --gin_file=gin/experiments/slam_demo_tiny.gin \
      --checkpoint=runs/demo [--task=slam_demo_paired] [--split=validation] [--num_pairs=50]

N held-out (speech, transcript) pairs; every speech is scored against every transcript:
  stm     the STM head's match logit of the concatenated pair [speech_i; text_j] (N^2 encoder
          passes): what STM pre-training taught;
  cosine  cosine similarity of mean-pooled shared-stack outputs of speech alone and text alone
          (2N passes): whether the two modalities share one space.
Recall@k both directions (`slam_jax.metrics.recall_at_k`); chance R@k = k / N.
"""

import json
import logging
import sys
from typing import Dict, Mapping, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import metrics
from slam_jax import partitioning
from slam_jax import types
from slam_jax.finetune import data as data_lib
from slam_jax.finetune import task_model


def _pool(x, valid):
  w = valid.astype(jnp.float32)
  return jnp.einsum("btd,bt->bd", x.astype(jnp.float32), w) / jnp.maximum(
      jnp.sum(w, axis=1), 1.0)[:, None]


def similarity_matrices(slam_model, params, batch: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """{'stm': [N, N], 'cosine': [N, N]} for N paired rows (row i = speech i, column j = text j)."""
  n = batch[types.KIND].shape[0]
  module = slam_model.module

  @jax.jit
  def embed(speech_batch, text_batch):
    speech = slam_model.encode(params, dict(zip(
        (types.SPEECH_FEATURES, types.SPEECH_MASK, types.TEXT_TOKENS, types.TEXT_SEGMENT_IDS,
         types.TEXT_POSITIONS), task_model.speech_only_args(speech_batch))))
    text = slam_model.encode(params, dict(zip(
        (types.SPEECH_FEATURES, types.SPEECH_MASK, types.TEXT_TOKENS, types.TEXT_SEGMENT_IDS,
         types.TEXT_POSITIONS), task_model.text_only_args(text_batch,
                                                          slam_model.encoder_config.num_mel_bins))))
    s = _pool(speech.shared_speech, speech.speech_valid)
    t = _pool(text.shared_text, text.text_valid)
    s = s / jnp.maximum(jnp.linalg.norm(s, axis=-1, keepdims=True), 1e-6)
    t = t / jnp.maximum(jnp.linalg.norm(t, axis=-1, keepdims=True), 1e-6)
    return s @ t.T

  @jax.jit
  def stm_row(features, mask, tokens, segments, positions):
    out = module.apply({"params": params}, features, mask, tokens, segments, positions,
                       deterministic=True)
    return out.stm_logits

  cosine = np.asarray(embed(batch, batch))
  stm = np.zeros((n, n), np.float32)
  for i in range(n):
    rep = lambda x: np.repeat(np.asarray(x)[i:i + 1], n, axis=0)
    stm[i] = np.asarray(stm_row(rep(batch[types.SPEECH_FEATURES]), rep(batch[types.SPEECH_MASK]),
                                batch[types.TEXT_TOKENS], batch[types.TEXT_SEGMENT_IDS],
                                batch[types.TEXT_POSITIONS]))
  return {"stm": stm, "cosine": cosine}


def evaluate_retrieval(slam_model, params, task: str = "slam_demo_paired",
                       split: str = "validation", num_pairs: int = 50,
                       feature_lengths: Optional[Mapping[str, int]] = None) -> Dict[str, float]:
  """R@1/5/10 both directions, by STM and by cosine, on the first `num_pairs` pairs of `split`."""
  feature_lengths = dict(feature_lengths or {"speech": 600, "text": 64})
  batch = next(data_lib.eval_batches(task, batch_size=num_pairs, feature_lengths=feature_lengths,
                                     split=split, max_examples=num_pairs))
  n = int(batch[task_model.VALID].sum())
  batch = {k: v[:n] for k, v in batch.items() if k != task_model.VALID}
  if n < 2 or not np.all(batch[types.KIND] == types.KIND_PAIRED):
    raise ValueError(f"Retrieval needs >= 2 PAIRED rows from {task}:{split}, got {n} rows of "
                     f"kinds {sorted(set(batch[types.KIND].tolist()))}")
  sims = similarity_matrices(slam_model, params, batch)
  out = {"pairs": float(n)}
  for name, sim in sims.items():
    out.update({f"{name}/{k}": v for k, v in metrics.recall_at_k(sim, (1, 5, 10)).items()})
  return out


def main(argv: Sequence[str]) -> Dict[str, float]:
  from slam_jax import train as train_lib  # pylint: disable=g-import-not-at-top
  from slam_jax.finetune import restore  # pylint: disable=g-import-not-at-top
  logging.basicConfig(level=logging.WARNING)
  jax.config.update("jax_threefry_partitionable", True)
  gin_files, bindings, options = [], [], {}
  for arg in argv:
    if train_lib.parse_gin_flag(arg, gin_files, bindings):
      continue
    key, _, value = arg.lstrip("-").partition("=")
    if key not in ("checkpoint", "task", "split", "num_pairs", "output") or not value:
      raise ValueError(f"Unknown flag {arg!r}: --gin_file=, --gin.K=V, --checkpoint=, --task=, "
                       "--split=, --num_pairs=, --output=")
    options[key] = value
  if "checkpoint" not in options or not gin_files:
    raise ValueError("Give --gin_file=<the pre-training experiment> and --checkpoint=<MODEL_DIR>")
  train_lib.parse_gin(gin_files, bindings)
  slam_model = gin.query_parameter("slam_jax.train.train.model").scoped_configurable_fn()
  shapes, dtypes = slam_model.input_shapes_and_types(2, {"speech": 600, "text": 64})
  abstract = partitioning.unbox(jax.eval_shape(
      lambda: slam_model.get_initial_variables(jax.random.PRNGKey(0), shapes, dtypes)))["params"]
  params = restore.restore_params(options["checkpoint"], abstract)
  lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
  results = evaluate_retrieval(slam_model, params, options.get("task", "slam_demo_paired"),
                               options.get("split", "validation"),
                               int(options.get("num_pairs", 50)), lengths)
  print("[retrieval] " + " | ".join(f"{k} {v:.1f}" for k, v in sorted(results.items())),
        flush=True)
  if options.get("output"):
    with open(options["output"], "w") as f:
      json.dump(results, f, indent=1)
  return results


if __name__ == "__main__":
  from slam_jax.finetune import retrieval as _module  # pylint: disable=g-import-not-at-top
  _module.main(sys.argv[1:])
