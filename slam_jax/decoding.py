"""Greedy and beam-search decoding over any incremental step function (jit-able, batched).

A model supplies `step_fn(tokens [N], step, state) -> (logits [N, V], state)`: the logits for the
token after `tokens`, which sit at position `step` (BOS at step 0). `state` is any pytree whose
leaves have leading dimension N (a decoder's KV cache; beam search reorders it along that axis).

Every row of a batch is decoded independently: its own maximum length (`max_decode_lengths`,
relative to its own source length) and its own hypotheses, so padding a batch never changes a
row's output as long as the model's logits for that row do not depend on padding.

Beam search (beam size K): at each step the K alive hypotheses are extended by every token; of
the 2K best extensions, those ending in EOS *among the best K* are finished (score = log p /
length penalty), and the best K that do not end in EOS stay alive. So beam size 1 is greedy
search exactly. The length penalty is GNMT's ((5 + length) / 6) ** alpha (Wu et al. 2016),
length counting EOS. A row stops when it reaches its maximum length (EOS is forced at the last
position) or when no alive hypothesis can beat its K finished ones (alpha >= 0).

Outputs hold the generated tokens without BOS, with EOS, then PAD (0).
"""

import dataclasses
from typing import Any, Callable, Tuple

import gin
import jax
import jax.numpy as jnp

PyTree = Any
StepFn = Callable[[jnp.ndarray, jnp.ndarray, PyTree], Tuple[jnp.ndarray, PyTree]]

NEG = -1e9  # Score of impossible hypotheses (finite: no inf - inf).


@gin.configurable(module="slam_jax.decoding")
@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  """How to decode.

  Attributes:
    beam_size: 1 = greedy search.
    length_penalty: GNMT alpha (0 = plain log-probability).
    max_len_a, max_len_b: a row's maximum output length (EOS included) is
      ceil(a * source_length + b), source_length in encoder frames, capped by the target buffer.
    eos_id: end of sequence (seqio: 1).
    bos_id: first decoder input (seqio/T5: PAD = 0).
  """
  beam_size: int = 4
  length_penalty: float = 0.6
  max_len_a: float = 0.0
  max_len_b: float = 1e9
  eos_id: int = 1
  bos_id: int = 0

  def __post_init__(self):
    if self.beam_size < 1:
      raise ValueError(f"DecodeConfig.beam_size must be >= 1, got {self.beam_size}")
    if self.length_penalty < 0:
      raise ValueError(f"DecodeConfig.length_penalty must be >= 0 (early stopping assumes it), "
                       f"got {self.length_penalty}")


def max_decode_lengths(source_lengths: jnp.ndarray, a: float, b: float,
                       buffer_length: int) -> jnp.ndarray:
  """int32 [B]: ceil(a * source_length + b) clipped to [1, buffer_length]."""
  raw = jnp.ceil(a * source_lengths.astype(jnp.float32) + jnp.float32(min(b, 1e9)))
  return jnp.clip(raw, 1, buffer_length).astype(jnp.int32)


def length_penalty(length: jnp.ndarray, alpha: float) -> jnp.ndarray:
  """GNMT's ((5 + length) / 6) ** alpha."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _force_eos(logp: jnp.ndarray, force: jnp.ndarray, eos_id: int) -> jnp.ndarray:
  """logp [..., V]; where force [...] only EOS stays possible."""
  is_eos = (jnp.arange(logp.shape[-1]) == eos_id).reshape((1,) * force.ndim + (-1,))
  return jnp.where(force[..., None] & ~is_eos, NEG, logp)


def greedy_decode(step_fn: StepFn, state: PyTree, max_lengths: jnp.ndarray, buffer_length: int,
                  eos_id: int = 1, bos_id: int = 0) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Argmax decoding.

  Args:
    step_fn: see module docstring (N = B).
    state: initial state, leaves [B, ...].
    max_lengths: int [B] per-row maximum output length (EOS included), <= buffer_length.
    buffer_length: L, the output buffer.
    eos_id, bos_id: special ids.

  Returns:
    (tokens int32 [B, L], log-probability float32 [B] of the output).
  """
  b = max_lengths.shape[0]
  seqs = jnp.full((b, buffer_length + 1), 0, jnp.int32).at[:, 0].set(bos_id)

  def cond(carry):
    i, _, _, done, _ = carry
    return (i < buffer_length) & ~jnp.all(done)

  def body(carry):
    i, seqs, state, done, score = carry
    logits, state = step_fn(seqs[:, i], i, state)
    logp = _force_eos(jax.nn.log_softmax(logits.astype(jnp.float32)), i >= max_lengths - 1,
                      eos_id)
    nxt = jnp.argmax(logp, axis=-1).astype(jnp.int32)
    score = score + jnp.where(done, 0.0, jnp.max(logp, axis=-1))
    nxt = jnp.where(done, 0, nxt)
    seqs = seqs.at[:, i + 1].set(nxt)
    return i + 1, seqs, state, done | (nxt == eos_id), score

  init = (jnp.zeros((), jnp.int32), seqs, state, jnp.zeros((b,), bool), jnp.zeros((b,)))
  _, seqs, _, _, score = jax.lax.while_loop(cond, body, init)
  return seqs[:, 1:], score


def _gather_beams(x: jnp.ndarray, idx: jnp.ndarray) -> jnp.ndarray:
  """x [B, K, ...], idx int [B, J] -> [B, J, ...]."""
  return jax.vmap(lambda row, i: row[i])(x, idx)


def _gather_state(state: PyTree, idx: jnp.ndarray, b: int, k: int) -> PyTree:
  """Reorders leaves [B*K, ...] by beam indices idx [B, K]."""
  flat = (jnp.arange(b)[:, None] * k + idx).reshape(-1)
  return jax.tree_util.tree_map(lambda x: x[flat], state)


def beam_search(step_fn: StepFn, state: PyTree, max_lengths: jnp.ndarray, buffer_length: int,
                beam_size: int, alpha: float = 0.6, eos_id: int = 1,
                bos_id: int = 0) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Beam search (see module docstring).

  Args:
    step_fn: see module docstring (N = B * K, row-major: row b's beams are b*K .. b*K+K-1).
    state: initial state, leaves [B, ...] (tiled to the beams here).
    max_lengths: int [B] per-row maximum output length (EOS included), <= buffer_length.
    buffer_length: L.
    beam_size: K (the vocabulary must have at least 2K entries).
    alpha: length penalty exponent (>= 0).
    eos_id, bos_id: special ids.

  Returns:
    (tokens int32 [B, K, L] best first, scores float32 [B, K] = log p / length penalty).
  """
  k = beam_size
  b = max_lengths.shape[0]
  state = jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), state)
  seqs = jnp.zeros((b, k, buffer_length + 1), jnp.int32).at[:, :, 0].set(bos_id)
  alive_lp = jnp.tile(jnp.array([0.0] + [NEG] * (k - 1), jnp.float32)[None], (b, 1))
  fin_seqs = seqs
  fin_scores = jnp.full((b, k), NEG, jnp.float32)
  max_lp = length_penalty(max_lengths, alpha)

  def cond(carry):
    i, _, alive_lp, _, fin_scores, _ = carry
    best_possible = alive_lp[:, 0] / max_lp
    done = (i >= max_lengths) | (jnp.min(fin_scores, axis=1) >= best_possible)
    return (i < buffer_length) & ~jnp.all(done)

  def body(carry):
    i, seqs, alive_lp, fin_seqs, fin_scores, state = carry
    logits, state = step_fn(seqs[:, :, i].reshape(b * k), i, state)
    vocab = logits.shape[-1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(b, k, vocab)
    logp = _force_eos(logp, jnp.broadcast_to((i >= max_lengths - 1)[:, None], (b, k)), eos_id)
    cand = (alive_lp[:, :, None] + logp).reshape(b, k * vocab)
    top_lp, top_idx = jax.lax.top_k(cand, 2 * k)
    beam, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    cand_seqs = _gather_beams(seqs, beam).at[:, :, i + 1].set(token)
    is_eos = token == eos_id
    # Finished: EOS extensions ranked among the best K (beam 1 == greedy), real scores only.
    finish = is_eos & (jnp.arange(2 * k) < k)[None] & (top_lp > NEG / 2)
    new_fin = jnp.where(finish, top_lp / length_penalty(i + 1, alpha), NEG)
    all_scores = jnp.concatenate([fin_scores, new_fin], axis=1)
    fin_scores, keep = jax.lax.top_k(all_scores, k)
    fin_seqs = _gather_beams(jnp.concatenate([fin_seqs, cand_seqs], axis=1), keep)
    # Alive: the best K extensions that do not end in EOS.
    alive_lp, pick = jax.lax.top_k(jnp.where(is_eos, NEG, top_lp), k)
    seqs = _gather_beams(cand_seqs, pick)
    state = _gather_state(state, jnp.take_along_axis(beam, pick, axis=1), b, k)
    return i + 1, seqs, alive_lp, fin_seqs, fin_scores, state

  init = (jnp.zeros((), jnp.int32), seqs, alive_lp, fin_seqs, fin_scores, state)
  _, _, _, fin_seqs, fin_scores, _ = jax.lax.while_loop(cond, body, init)
  return fin_seqs[:, :, 1:], fin_scores


def decode(step_fn: StepFn, state: PyTree, max_lengths: jnp.ndarray, buffer_length: int,
           config: DecodeConfig) -> jnp.ndarray:
  """The best output per row, int32 [B, L]: greedy when beam_size == 1, else beam search."""
  if config.beam_size == 1:
    return greedy_decode(step_fn, state, max_lengths, buffer_length, config.eos_id,
                         config.bos_id)[0]
  tokens, _ = beam_search(step_fn, state, max_lengths, buffer_length, config.beam_size,
                          config.length_penalty, config.eos_id, config.bos_id)
  return tokens[:, 0]
