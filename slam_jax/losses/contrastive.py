"""Contrastive (InfoNCE) loss of wav2vec 2.0 (arXiv 2006.11477, Eq. 3), as used by w2v-BERT.

For every masked frame t the context vector c_t (contrastive-module output, projected) must pick the
true quantized vector q_t among K distractors q_s drawn uniformly from *other masked frames of the
same utterance*:

  L_t = -log( exp(sim(c_t, q_t) / kappa) / sum_{q in {q_t} U distractors} exp(sim(c_t, q) / kappa) )

with cosine similarity and temperature kappa (wav2vec 2.0: K = 100, kappa = 0.1). Distractors whose
quantized vector is identical to q_t (same code in every group) are dropped from the softmax, as in
fairseq's wav2vec 2.0 ("neg_is_pos"). Gradients reach both the context and the quantizer.
"""

from typing import Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

from slam_jax.losses import reduce

_NEG = -1e9  # logit of an excluded distractor (finite: keeps gradients finite)


class Distractors(NamedTuple):
  """Attributes:
    indices: int32 [B, T, K] frame index (same row) of each distractor of frame t.
    valid: bool [B, T, K] whether that distractor exists (a row needs >= 2 masked frames).
  """

  indices: jnp.ndarray
  valid: jnp.ndarray


def sample_distractors(key: jax.Array, mask: jnp.ndarray, num_distractors: int) -> Distractors:
  """Draws K distractors per masked frame, uniformly (with replacement) from the row's other masked
  frames.

  Args:
    key: PRNG key.
    mask: bool [B, T] masked (scored) frames.
    num_distractors: K.

  Returns:
    `Distractors`; rows with fewer than two masked frames get none (valid False), unmasked frames
    get none.
  """
  reduce.check_shape("mask", mask, (None, None))
  mask = mask.astype(bool)
  batch, frames = mask.shape
  num = jnp.sum(mask, axis=1).astype(jnp.int32)  # [B]
  # Masked frame positions first (stable), so masked_pos[b, j] is the j-th masked frame.
  masked_pos = jnp.argsort(~mask, axis=1, stable=True).astype(jnp.int32)
  rank = jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1  # rank of frame t among masked frames
  u = jax.random.uniform(key, (batch, frames, num_distractors))
  others = jnp.maximum(num - 1, 1).astype(jnp.float32)[:, None, None]
  j = jnp.minimum(jnp.floor(u * others).astype(jnp.int32), others.astype(jnp.int32) - 1)
  j = j + (j >= rank[..., None]).astype(jnp.int32)  # skip the frame itself
  j = jnp.clip(j, 0, frames - 1)
  indices = jnp.take_along_axis(masked_pos, j.reshape(batch, -1), axis=1)
  indices = indices.reshape(batch, frames, num_distractors)
  valid = mask[..., None] & (num >= 2)[:, None, None]
  valid = jnp.broadcast_to(valid, indices.shape)
  return Distractors(indices=indices, valid=valid)


def _normalise(x: jnp.ndarray) -> jnp.ndarray:
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def contrastive_loss(context: jnp.ndarray, quantized: jnp.ndarray, quantized_ids: jnp.ndarray,
                     mask: jnp.ndarray, distractors: Distractors,
                     temperature: float = 0.1, normaliser=None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """InfoNCE over masked frames.

  Args:
    context: [B, T, D] projected contrastive-module outputs.
    quantized: [B, T, D] quantized vectors (targets and distractors).
    quantized_ids: int [B, T, G] the codes that make up `quantized` (identity test for distractors).
    mask: bool [B, T] frames to score (masked, real, in rows of the right kind).
    distractors: from `sample_distractors` (indices into the same row).
    temperature: kappa.
    normaliser: frames the sums are divided by (default: the scored frames).

  Returns:
    (mean loss over scored frames, metrics {loss, accuracy, count}). A frame is scored when it is
    in `mask` and has at least one valid distractor; accuracy is the fraction of scored frames whose
    true target has the highest logit.
  """
  reduce.check_shape("context", context, (None, None, None))
  b, t, d = context.shape
  reduce.check_shape("quantized", quantized, (b, t, d))
  reduce.check_shape("quantized_ids", quantized_ids, (b, t, None))
  reduce.check_shape("mask", mask, (b, t))
  reduce.check_shape("distractors.indices", distractors.indices, (b, t, None))
  reduce.check_shape("distractors.valid", distractors.valid, distractors.indices.shape)

  c = _normalise(context)
  q = _normalise(quantized)
  sim = jnp.einsum("btd,bsd->bts", c, q) / temperature  # [B, T, T]: c_t against every q_s
  positive = jnp.diagonal(sim, axis1=1, axis2=2)  # [B, T]
  negative = jnp.take_along_axis(sim, distractors.indices, axis=2)  # [B, T, K]

  ids_neg = jax.vmap(lambda ids, idx: ids[idx])(quantized_ids, distractors.indices)  # [B,T,K,G]
  same_as_target = jnp.all(ids_neg == quantized_ids[:, :, None, :], axis=-1)
  keep = distractors.valid & ~same_as_target
  negative = jnp.where(keep, negative, _NEG)

  logits = jnp.concatenate([positive[..., None], negative], axis=-1)  # [B, T, 1 + K]
  per_frame = jax.nn.logsumexp(logits, axis=-1) - positive
  correct = (jnp.argmax(logits, axis=-1) == 0).astype(jnp.float32)

  scored = mask.astype(bool) & jnp.any(distractors.valid, axis=-1)
  loss, count = reduce.weighted_mean(per_frame, scored, normaliser)
  accuracy, _ = reduce.weighted_mean(correct, scored, normaliser)
  return loss, {"loss": loss, "accuracy": accuracy, "count": count}
