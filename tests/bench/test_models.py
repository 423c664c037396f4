"""Benchmark models and batches (slam_jax/bench/models.py): batch counts, and the stack model's
depthwise-saving remat policy against no remat."""

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.bench import models as bench_models
from slam_jax.models import encoder as encoder_lib
from slam_jax.models import layers as layers_lib


def test_batch_counts():
  stack = bench_models.stack_batch(0, 2, 25, 8)
  assert bench_models.batch_counts(stack) == {"examples": 2.0, "audio_seconds": 2 * 25 * 0.04,
                                              "text_tokens": 0.0}
  speech = bench_models.pretrain_batch(0, 3, 100, 5, 50, "speech")
  assert bench_models.batch_counts(speech) == {"examples": 3.0, "audio_seconds": 3.0,
                                               "text_tokens": 0.0}
  mixed = bench_models.pretrain_batch(0, 3, 100, 5, 50, "mixed")
  counts = bench_models.batch_counts(mixed)
  assert counts["text_tokens"] == np.sum(mixed["text_segment_ids"] > 0) > 0


def test_depthwise_saving_remat_policy_matches_no_remat():
  base = encoder_lib.get_preset("tiny", dropout_rate=0.0)
  batch = bench_models.stack_batch(0, 2, 9, base.model_dim)

  def grads(policy):
    model = bench_models.StackModel(base.replace(remat_policy=policy), 2)
    shapes, dtypes = model.input_shapes_and_types(2, 9)
    # A jitted init: one compile instead of op-by-op dispatch of the eager init.
    params = jax.jit(lambda rng: model.get_initial_variables(rng, shapes, dtypes))(
        jax.random.PRNGKey(0))["params"]
    params = jax.tree_util.tree_map(jnp.asarray, layers_lib.nn.meta.unbox(params))
    return jax.jit(jax.grad(lambda p: model.loss_fn(p, batch, None)[0]))(params)

  want = grads("none")
  got = grads("dots_and_depthwise_saveable")
  jax.tree_util.tree_map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6),
                         got, want)
