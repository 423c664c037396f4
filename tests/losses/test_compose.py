"""Composition: each term sees only its kind's rows; absent kinds give exact zeros; weights."""

import jax
import jax.numpy as jnp
import numpy as np

from slam_jax import types
from slam_jax.losses import compose, contrastive

T, S, P = types.KIND_TEXT, types.KIND_SPEECH, types.KIND_PAIRED
KINDS = [T, S, P, P, T, S, P]


def _make(kinds, seed=0):
  rng = np.random.default_rng(seed)
  b, t, l, d, g, v, vocab = len(kinds), 8, 6, 4, 2, 3, 11
  kind = np.asarray(kinds, np.int32)
  speech_len = np.where(kind == T, 0, rng.integers(4, t + 1, b))
  valid = np.arange(t)[None, :] < speech_len[:, None]
  speech_mask = valid & (rng.random((b, t)) < 0.6)
  speech_mask[np.arange(b), 0] = valid[:, 0]
  text_mask = (kind != S)[:, None] & (rng.random((b, l)) < 0.5)
  f = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
  outputs = compose.LossInputs(
      context=f(b, t, d), quantized=f(b, t, d),
      quantized_ids=jnp.asarray(rng.integers(0, v, (b, t, g)), jnp.int32),
      code_probs=jax.nn.softmax(f(b, t, g, v), axis=-1),
      target_ids=jnp.asarray(rng.integers(0, v, (b, t, g)), jnp.int32),
      speech_logits=f(b, t, g, v), text_logits=f(b, l, vocab), stm_logits=f(b),
      speech_valid=jnp.asarray(valid))
  labels = np.where(kind == P, np.arange(b) % 2, 1)
  targets = compose.Targets(
      kind=jnp.asarray(kind), text_targets=jnp.asarray(rng.integers(2, vocab, (b, l)), jnp.int32),
      text_mask=jnp.asarray(text_mask), speech_mask=jnp.asarray(speech_mask),
      distractors=contrastive.sample_distractors(jax.random.key(seed), jnp.asarray(speech_mask), 3),
      stm_labels=jnp.asarray(labels, jnp.float32), text_rows=jnp.asarray(kind == T),
      speech_rows=jnp.asarray(kind == S), tlm_rows=jnp.asarray((kind == P) & (labels == 1)),
      stm_rows=jnp.asarray(kind == P))
  return outputs, targets


def _rows(tree, rows):
  return jax.tree_util.tree_map(lambda x: x[np.asarray(rows)], tree)


WEIGHTS = compose.LossWeightSchedule(stage2_start_step=0).weights(0)
# Jitted: one compilation per batch shape instead of one per eager op.
_loss = jax.jit(compose.pretraining_loss)


def _terms(metrics):
  return {k: float(metrics[f"{k}/loss"]) for k in compose.TERMS}


def test_removing_a_kind_removes_exactly_its_terms():
  outputs, targets = _make(KINDS)
  full_loss, full = _loss(outputs, targets, WEIGHTS)
  full_terms = _terms(full)
  assert all(v > 0 for v in full_terms.values()), full_terms

  no_paired = [i for i, k in enumerate(KINDS) if k != P]
  loss, m = _loss(_rows(outputs, no_paired), _rows(targets, no_paired), WEIGHTS)
  terms = _terms(m)
  assert terms["tlm"] == 0.0 and terms["stm"] == 0.0
  for k in ("text_mlm", "contrastive", "diversity", "speech_mlm"):
    np.testing.assert_allclose(terms[k], full_terms[k], rtol=1e-6)
  np.testing.assert_allclose(loss, full_loss - full_terms["tlm"] - full_terms["stm"], rtol=1e-5)

  no_text = [i for i, k in enumerate(KINDS) if k != T]
  _, m = _loss(_rows(outputs, no_text), _rows(targets, no_text), WEIGHTS)
  terms = _terms(m)
  assert terms["text_mlm"] == 0.0
  for k in ("contrastive", "diversity", "speech_mlm", "tlm", "stm"):
    np.testing.assert_allclose(terms[k], full_terms[k], rtol=1e-6)

  no_speech = [i for i, k in enumerate(KINDS) if k != S]
  _, m = _loss(_rows(outputs, no_speech), _rows(targets, no_speech), WEIGHTS)
  terms = _terms(m)
  assert terms["contrastive"] == terms["diversity"] == terms["speech_mlm"] == 0.0
  for k in ("text_mlm", "tlm", "stm"):
    np.testing.assert_allclose(terms[k], full_terms[k], rtol=1e-6)


def test_weights_scale_terms():
  outputs, targets = _make(KINDS, seed=1)
  base, m = _loss(outputs, targets, WEIGHTS)
  terms = _terms(m)
  np.testing.assert_allclose(base, sum(float(WEIGHTS[k]) * terms[k] for k in terms), rtol=1e-6)
  for k in compose.TERMS:
    w = dict(WEIGHTS)
    w[k] = WEIGHTS[k] + 2.0
    loss, _ = _loss(outputs, targets, w)
    np.testing.assert_allclose(loss, base + 2.0 * terms[k], rtol=1e-5)


def test_batch_without_paired_rows_has_no_nan_values_or_gradients():
  outputs, targets = _make([T, S, S, T], seed=2)

  def total(o):
    return _loss(o, targets, WEIGHTS)[0]

  loss, m = _loss(outputs, targets, WEIGHTS)
  assert all(bool(jnp.isfinite(v)) for v in m.values())
  assert float(m["tlm/loss"]) == 0.0 and float(m["stm/loss"]) == 0.0
  grads = jax.grad(total, allow_int=True)(outputs)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads)
             if jnp.issubdtype(g.dtype, jnp.floating))
  assert bool(jnp.all(grads.stm_logits == 0.0))
  # Only a text batch: every speech term is 0 too.
  outputs, targets = _make([T, T], seed=3)
  _, m = _loss(outputs, targets, WEIGHTS)
  assert all(float(m[f"{k}/loss"]) == 0.0 for k in compose.TERMS if k != "text_mlm")


def test_schedule_switches_stage_at_step():
  sched = compose.LossWeightSchedule(stage2_start_step=100)
  w0 = jax.jit(sched.weights)(jnp.asarray(99))
  w1 = jax.jit(sched.weights)(jnp.asarray(100))
  assert float(w0["tlm"]) == float(w0["stm"]) == 0.0 and float(w0["text_mlm"]) == 1.0
  assert float(w1["tlm"]) == float(w1["stm"]) == 1.0
  np.testing.assert_allclose(float(w1["diversity"]), 0.1, rtol=1e-6)


def test_normalisers_split_a_batch_into_parts_that_add_up():
  """Dividing each part's sums by the whole batch's counts (scaled by the part's share of rows)
  makes the mean of the parts' losses the full-batch loss, however unevenly the kinds fall."""
  kinds = [T, T, T, S, P, P, S, P, T]  # 3 parts of 3 rows: all text / mixed / mixed
  outputs, targets = _make(kinds, seed=4)
  weights = dict(WEIGHTS, diversity=jnp.float32(0.0))  # nonlinear in the batch: not additive
  full, full_m = _loss(outputs, targets, weights)
  counts = compose.counts(targets, outputs.speech_valid)
  parts = []
  for rows in ([0, 1, 2], [3, 4, 5], [6, 7, 8]):
    norm = {k: v * len(rows) / len(kinds) for k, v in counts.items()}
    parts.append(_loss(_rows(outputs, rows), _rows(targets, rows), weights, normalisers=norm))
  np.testing.assert_allclose(np.mean([float(p[0]) for p in parts]), float(full), rtol=1e-5)
  for term in ("text_mlm", "contrastive", "speech_mlm", "tlm", "stm"):
    np.testing.assert_allclose(np.mean([float(p[1][f"{term}/loss"]) for p in parts]),
                               float(full_m[f"{term}/loss"]), rtol=1e-5, atol=1e-7)
  # Their own means instead (what microbatches did before): the all-text part weighs text_mlm 3x.
  own = np.mean([float(_loss(_rows(outputs, r), _rows(targets, r), weights)[0])
                 for r in ([0, 1, 2], [3, 4, 5], [6, 7, 8])])
  assert abs(own - float(full)) > 1e-3
