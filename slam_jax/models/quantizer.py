"""Gumbel-softmax product quantizer (wav2vec 2.0 §2/§3.2, arXiv 2006.11477; used by w2v-BERT).

The feature encoder's (unmasked) frames, layer-normalised, are mapped to G x V logits; each of the
G groups picks one of its V codebook entries (dimension code_dim / G) and the picks are
concatenated into a code_dim vector. In training the pick is a straight-through Gumbel-softmax
sample: the forward pass uses the hard one-hot, the backward pass the gradient of the soft sample,
so gradients reach the feature encoder. The Gumbel temperature decays with the step: tau(step) =
max(start * decay^step, end).

Outputs: quantized vectors [B, T, code_dim] (the contrastive targets) with the codes they are made
of (`quantized_ids`: the Gumbel-sampled codes in training); code ids [B, T, G] of the noise-free
argmax (`ids`); the noise-free softmax probabilities [B, T, G, V] (for the diversity loss); the
codebook-usage perplexity over the frames selected by `weights`. Which ids the masked prediction
predicts is the model's choice (`ObjectiveConfig.mlm_target`): fairseq2's w2v-BERT predicts the
sampled code (`quantized_ids`), the one the contrastive positive is made of.

Logits, softmax, Gumbel noise and argmax always run in float32, whatever the compute dtype of the
projection (bf16 logits of 1024 entries tie and round often enough to change the pick).

w2v-BERT (fairseq2's w2v-BERT 600m config): ONE codebook of 1024 entries (quantized dim 1024),
temperature (2, 0.1, 0.999995). wav2vec 2.0's 2 x 320 product quantizer is the other layout.
"""

import dataclasses
import math
from typing import NamedTuple, Optional

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from slam_jax.models import layers as layers_lib


@gin.configurable
@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
  """Codebooks and temperature schedule.

  Attributes:
    num_groups: G codebooks (w2v-BERT: 1; wav2vec 2.0: 2).
    num_entries: V entries per codebook (w2v-BERT: 1024; wav2vec 2.0: 320).
    code_dim: dimension of a quantized vector (concatenation of G entries of code_dim / G).
    temperature_start: Gumbel temperature at step 0 (wav2vec 2.0: 2).
    temperature_end: floor of the temperature (wav2vec 2.0 BASE: 0.5, LARGE: 0.1).
    temperature_decay: per-step multiplicative decay (wav2vec 2.0: 0.999995).
    logits_init_stddev: the logits projection starts with N(0, stddev^2) weights and zero biases;
      fairseq's wav2vec 2.0 and fairseq2's w2v-BERT use 1.0, not 1/sqrt(dim). With unit-scale
      features the logits then spread over ~sqrt(dim), so from the first step the input, not the
      Gumbel noise, picks the codes and the contrastive / masked-prediction targets are
      predictable. None: lecun_normal (1/sqrt(dim)), under which the demo's contrastive loss sat
      at chance, ln(K + 1), for its first ~430 steps (docs/objectives.md).
    normalize_input: layer-normalise each frame (no scale, no bias) before the logits projection.
      fairseq's wav2vec 2.0 and fairseq2's w2v-BERT quantize layer-normed features; without a
      norm the diversity loss shrinks the features (the demo: RMS 0.02 by step 100) until the
      Gumbel noise, not the input, picks the codes and the contrastive targets are random.
  """

  num_groups: int = 1
  num_entries: int = 1024
  code_dim: int = 256
  temperature_start: float = 2.0
  temperature_end: float = 0.5
  temperature_decay: float = 0.999995
  logits_init_stddev: Optional[float] = 1.0
  normalize_input: bool = True

  def __post_init__(self):
    if self.num_groups < 1 or self.num_entries < 2:
      raise ValueError(f"QuantizerConfig needs num_groups >= 1 and num_entries >= 2, got "
                       f"{self.num_groups} and {self.num_entries}")
    if self.code_dim % self.num_groups:
      raise ValueError(f"QuantizerConfig.code_dim={self.code_dim} must be divisible by "
                       f"num_groups={self.num_groups}")
    if not 0 < self.temperature_end <= self.temperature_start:
      raise ValueError("QuantizerConfig needs 0 < temperature_end <= temperature_start")

  @property
  def num_codes(self) -> int:
    """G * V: the upper bound of the perplexity."""
    return self.num_groups * self.num_entries

  def temperature(self, step) -> jnp.ndarray:
    """Gumbel temperature at `step` (int or traced scalar)."""
    step = jnp.asarray(step, jnp.float32)
    # decay**step in log space: float32 cannot hold 0.999995 precisely enough to raise it to 1e5.
    log_decay = math.log(self.temperature_decay)
    return jnp.maximum(self.temperature_start * jnp.exp(step * log_decay), self.temperature_end)


class QuantizerOutputs(NamedTuple):
  """Attributes:
    quantized: float32 [B, T, code_dim].
    quantized_ids: int32 [B, T, G] the entries `quantized` is made of (Gumbel-sampled in training,
      equal to `ids` when deterministic).
    ids: int32 [B, T, G] argmax of the noise-free logits.
    probs: float32 [B, T, G, V] noise-free softmax probabilities.
    perplexity: scalar, sum over groups of exp(entropy of the probs averaged over `weights`).
    temperature: scalar Gumbel temperature used.
  """

  quantized: jnp.ndarray
  quantized_ids: jnp.ndarray
  ids: jnp.ndarray
  probs: jnp.ndarray
  perplexity: jnp.ndarray
  temperature: jnp.ndarray


def codebook_perplexity(probs: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
  """Sum over groups of exp(H(mean probs)), the mean taken over frames with nonzero weight.

  Args:
    probs: [B, T, G, V] per-frame distributions over each group's entries.
    weights: [B, T] frame weights (0 excludes a frame).

  Returns:
    Scalar in [G, G * V] (G when no frame is selected: the averaged probs are then all zero).
  """
  if probs.ndim != 4 or weights.shape != probs.shape[:2]:
    raise ValueError(f"probs must be [B, T, G, V] and weights [B, T]; got {probs.shape} and "
                     f"{weights.shape}")
  w = weights.astype(jnp.float32)
  total = jnp.maximum(jnp.sum(w), 1.0)
  avg = jnp.einsum("btgv,bt->gv", probs.astype(jnp.float32), w) / total
  entropy = -jnp.sum(avg * jnp.log(jnp.maximum(avg, 1e-9)), axis=-1)  # [G]
  return jnp.sum(jnp.exp(entropy))


class GumbelQuantizer(nn.Module):
  """Straight-through Gumbel-softmax product quantizer.

  Attributes:
    config: codebooks and temperature schedule.
    dtype: the model's compute dtype (unused: logits and codebook lookups always run in fp32).
  """

  config: QuantizerConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, weights: jnp.ndarray, step=0,
               deterministic: bool = True,
               noise_keys: Optional[jnp.ndarray] = None) -> QuantizerOutputs:
    """Quantizes frames.

    Args:
      features: [B, T, D] feature-encoder output (before masking).
      weights: [B, T] frames that count towards the perplexity (real frames).
      step: training step (int or traced scalar) for the temperature schedule.
      deterministic: if True, no Gumbel noise (hard argmax); else draws from rng stream 'gumbel'.
      noise_keys: optional uint32 [B, key] raw PRNG key data, one per row: row b's Gumbel noise
        comes from its own key, so a row draws the same noise whichever microbatch it lands in.

    Returns:
      `QuantizerOutputs`.
    """
    cfg = self.config
    if features.ndim != 3 or weights.shape != features.shape[:2]:
      raise ValueError(f"features must be [B, T, D] and weights [B, T]; got {features.shape} and "
                       f"{weights.shape}")
    g, v = cfg.num_groups, cfg.num_entries
    # The projection in fp32 (its matmul is small next to the encoder's): logits, their softmax,
    # the Gumbel perturbation and the argmax must not see bf16 rounding.
    x = features.astype(jnp.float32)
    if cfg.normalize_input:
      x = x - jnp.mean(x, axis=-1, keepdims=True)
      x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-5)
    init = (None if cfg.logits_init_stddev is None
            else nn.initializers.normal(stddev=cfg.logits_init_stddev))
    logits = layers_lib.dense((g, v), ("embed", "codebook", None), dtype=jnp.float32,
                              name="logits", kernel_init=init)(x)  # [B, T, G, V]
    codebook = self.param(
        "codebook", layers_lib.partitioned(nn.initializers.normal(stddev=1.0),
                                           ("codebook", None, None)),
        (g, v, cfg.code_dim // g), jnp.float32)

    tau = cfg.temperature(step)
    probs = jax.nn.softmax(logits, axis=-1)
    ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if deterministic:
      picked = ids
      onehot = jax.nn.one_hot(ids, v, dtype=jnp.float32)
    else:
      if noise_keys is None:
        noise = jax.random.gumbel(self.make_rng("gumbel"), logits.shape, jnp.float32)
      else:
        noise = jax.vmap(lambda k: jax.random.gumbel(jax.random.wrap_key_data(k),
                                                     logits.shape[1:], jnp.float32))(noise_keys)
      soft = jax.nn.softmax((logits + noise) / tau, axis=-1)
      picked = jnp.argmax(soft, axis=-1).astype(jnp.int32)
      hard = jax.nn.one_hot(picked, v, dtype=jnp.float32)
      onehot = hard + soft - jax.lax.stop_gradient(soft)  # straight-through
    quantized = jnp.einsum("btgv,gvd->btgd", onehot, codebook)
    quantized = quantized.reshape(features.shape[:2] + (cfg.code_dim,))
    perplexity = codebook_perplexity(probs, weights)
    return QuantizerOutputs(quantized=quantized, quantized_ids=picked, ids=ids, probs=probs,
                            perplexity=perplexity, temperature=tau)


def code_perplexity(ids: jnp.ndarray, weights: jnp.ndarray, num_entries: int) -> jnp.ndarray:
  """Perplexity of the hard code assignments (a monitoring metric, no gradient).

  Args:
    ids: int [B, T, G].
    weights: [B, T].
    num_entries: V.
  """
  onehot = jax.nn.one_hot(ids, num_entries, dtype=jnp.float32)
  return codebook_perplexity(onehot, weights)

