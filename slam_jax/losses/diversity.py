"""Codebook diversity loss of wav2vec 2.0 (arXiv 2006.11477, Eq. 4), weighted alpha = 0.1 there and
in w2v-BERT (L_c = L_w + 0.1 L_d).

With p_bar_g the softmax probabilities of group g averaged over the selected frames, the perplexity
is PPL = sum_g exp(H(p_bar_g)) in [G, G*V] and the loss is (G*V - PPL) / (G*V): 0 for a uniformly
used codebook, (G*V - G) / (G*V) for a collapsed one. (This is fairseq's form; the paper writes the
negative entropy, which has the same minimiser.)
"""

from typing import Dict, Tuple

import jax.numpy as jnp

from slam_jax.losses import reduce
from slam_jax.models import quantizer as quantizer_lib


def diversity_loss(probs: jnp.ndarray, weights: jnp.ndarray,
                   normaliser=None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Diversity loss over the frames with nonzero weight.

  The loss is a nonlinear function of the averaged probabilities, so it cannot be split into
  per-frame sums: under microbatching each microbatch scores its own average, weighted by its
  share of the batch's frames (`normaliser`; what fairseq does with gradient accumulation).

  Args:
    probs: [B, T, G, V] noise-free quantizer probabilities.
    weights: [B, T] frames that count (real frames of rows of the right kind).
    normaliser: frames of the whole batch scaled to this microbatch; the loss is multiplied by
      count / normaliser (default: by 1).

  Returns:
    (loss, metrics {loss, perplexity, count}); loss and perplexity are 0 when no frame counts.
  """
  reduce.check_shape("probs", probs, (None, None, None, None))
  b, t, g, v = probs.shape
  reduce.check_shape("weights", weights, (b, t))
  count = jnp.sum(weights.astype(jnp.float32))
  present = (count > 0).astype(jnp.float32)
  perplexity = quantizer_lib.codebook_perplexity(probs, weights) * present
  loss = (g * v - perplexity) / (g * v) * present
  if normaliser is not None:
    norm = jnp.asarray(normaliser, jnp.float32)
    loss = loss * count / jnp.where(norm > 0, norm, 1.0)
  return loss, {"loss": loss, "perplexity": perplexity, "count": count}
