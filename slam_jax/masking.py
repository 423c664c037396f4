"""Span masking for speech frames (wav2vec 2.0 / w2v-BERT) and text tokens (SpanBERT).

Both functions are pure, vectorised over the batch (fixed shapes, no Python loop over examples, so
they run inside `jax.jit`) and deterministic given their PRNG key; the model derives that key from
(seed, step), so a resumed run repeats the same masks.

Speech (wav2vec 2.0, arXiv 2006.11477 §3.3/§4.2; reused by w2v-BERT, arXiv 2108.06209): every real
frame starts a span with probability `start_prob` (p = 0.065), each span covers `span_length`
(M = 10) frames, spans may overlap; about 1 - (1 - p)^M = 49% of frames end up masked. Padding is
never masked, and an utterance that drew fewer than `min_spans` (2, fairseq's `mask_min_masks`)
starts gets the missing ones at uniformly chosen other real frames.

Text (SpanBERT, arXiv 1907.10529 §3.1): span lengths follow a geometric distribution Geo(p = 0.2)
restricted to 1..10 (mean 3.8), spans are drawn until 15% of the row's maskable tokens are covered
(the last span is shortened so the budget is met exactly) and are placed uniformly without overlap
or adjacency; each *span* is then replaced by the mask token (80%), by random tokens (10%) or kept
(10%). Padding (id 0, segment 0) and special ids (EOS = 1) are never masked. In a packed text row
a span may straddle two packed examples (it skips the EOS between them, which stays visible).

The mask token: seqio's SentencePiece vocabulary has no [MASK] piece, so the model reserves one id
(`SlamModel` defaults to `vocab_size - 1`; with seqio's `extra_ids` that id is `<extra_id_0>`,
which the tokenizer never emits from text). `check_mask_id` verifies that at start-up against the
SentencePiece model. Random replacement tokens are drawn from the real pieces only: never PAD, EOS,
UNK (seqio's ids 0, 1, 2), the mask id or the unused extra ids above the pieces.
"""

import dataclasses
from typing import Any, NamedTuple, Optional, Tuple

import gin
import jax
import jax.numpy as jnp

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2  # seqio's SentencePieceVocabulary: pad 0, eos 1, unk 2.


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SpeechMaskConfig:
  """Speech span masking over the feature encoder's (subsampled) frames.

  Attributes:
    start_prob: probability that a real frame starts a span (wav2vec 2.0 p = 0.065).
    span_length: frames per span (wav2vec 2.0 M = 10).
    min_spans: fewest span starts per utterance (fairseq's wav2vec 2.0 `mask_min_masks` = 2);
      a short utterance gets as many as it has real frames.
  """

  start_prob: float = 0.065
  span_length: int = 10
  min_spans: int = 2

  def __post_init__(self):
    if not 0.0 < self.start_prob <= 1.0:
      raise ValueError(f"SpeechMaskConfig.start_prob must be in (0, 1], got {self.start_prob}")
    if self.span_length < 1:
      raise ValueError(f"SpeechMaskConfig.span_length must be >= 1, got {self.span_length}")
    if self.min_spans < 1:
      raise ValueError(f"SpeechMaskConfig.min_spans must be >= 1, got {self.min_spans}")

  @property
  def expected_ratio(self) -> float:
    """Expected fraction of masked frames far from the utterance edges: 1 - (1 - p)^M."""
    return 1.0 - (1.0 - self.start_prob) ** self.span_length


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TextMaskConfig:
  """SpanBERT text span masking.

  Attributes:
    mask_rate: fraction of a row's maskable tokens to mask (SpanBERT/BERT: 0.15).
    geometric_p: success probability of the span-length distribution Geo(p) (SpanBERT: 0.2).
    max_span: longest span; the distribution is restricted to 1..max_span (SpanBERT: 10).
    replace_with_mask: fraction of spans replaced by the mask token (BERT/SpanBERT: 0.8).
    replace_with_random: fraction of spans replaced by random tokens (0.1); the rest (0.1) keep
      their original tokens but are still predicted.
    special_ids: ids never masked and never drawn as random replacements (PAD, EOS).
  """

  mask_rate: float = 0.15
  geometric_p: float = 0.2
  max_span: int = 10
  replace_with_mask: float = 0.8
  replace_with_random: float = 0.1
  special_ids: Tuple[int, ...] = (PAD_ID, EOS_ID)

  def __post_init__(self):
    if not 0.0 < self.mask_rate < 1.0:
      raise ValueError(f"TextMaskConfig.mask_rate must be in (0, 1), got {self.mask_rate}")
    if not 0.0 < self.geometric_p <= 1.0:
      raise ValueError(f"TextMaskConfig.geometric_p must be in (0, 1], got {self.geometric_p}")
    if self.max_span < 1:
      raise ValueError(f"TextMaskConfig.max_span must be >= 1, got {self.max_span}")
    if (self.replace_with_mask < 0 or self.replace_with_random < 0
        or self.replace_with_mask + self.replace_with_random > 1.0):
      raise ValueError(
          "TextMaskConfig.replace_with_mask and replace_with_random must be >= 0 and sum to <= 1, "
          f"got {self.replace_with_mask} and {self.replace_with_random}")


class TextMaskResult(NamedTuple):
  """What `text_span_mask` returns.

  Attributes:
    inputs: int32 [batch, length] tokens the encoder sees (mask token / random / original).
    mask: bool [batch, length] positions to predict (all selected positions, kept ones included).
  """

  inputs: jnp.ndarray
  mask: jnp.ndarray


def _check_rank2(name: str, x: jnp.ndarray) -> None:
  if x.ndim != 2:
    raise ValueError(f"{name} must be [batch, length], got shape {x.shape}")


def _rank_among(valid: jnp.ndarray) -> jnp.ndarray:
  """0-based index of each True position among the True positions of its row (garbage elsewhere)."""
  return jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1


def speech_span_mask(key: jax.Array, valid: jnp.ndarray, config: SpeechMaskConfig) -> jnp.ndarray:
  """Samples wav2vec 2.0 span masks.

  Args:
    key: PRNG key.
    valid: bool [batch, frames]; True on real (non-padding) frames.
    config: span parameters.

  Returns:
    bool [batch, frames] mask, False on padding; every row starts at least
    min(config.min_spans, its real frames) spans at distinct frames.
  """
  _check_rank2("valid", valid)
  valid = valid.astype(bool)
  batch, frames = valid.shape
  start_key, force_key = jax.random.split(key)
  starts = jax.random.bernoulli(start_key, config.start_prob, (batch, frames)) & valid

  # A row with fewer than min_spans starts gets the missing ones at uniformly chosen other real
  # frames: the frames that are real and not yet starts, in a random order, the first `missing`.
  missing = jnp.maximum(config.min_spans - jnp.sum(starts, axis=1), 0)  # [batch]
  noise = jnp.where(valid & ~starts, jax.random.uniform(force_key, (batch, frames)), 2.0)
  order_rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)  # rank of each frame's noise
  starts = starts | ((order_rank < missing[:, None]) & valid & ~starts)

  # Frame t is masked when a span starts in [t - M + 1, t]: a difference of running counts.
  count = jnp.cumsum(starts.astype(jnp.int32), axis=1)
  shift = min(config.span_length, frames)
  lagged = jnp.pad(count, ((0, 0), (shift, 0)))[:, :frames]
  return ((count - lagged) > 0) & valid


def _truncated_geometric(key: jax.Array, shape, p: float, max_len: int) -> jnp.ndarray:
  """Samples Geo(p) on {1, 2, ...} restricted (renormalised) to {1, ..., max_len}."""
  if p >= 1.0:
    return jnp.ones(shape, jnp.int32)
  u = jax.random.uniform(key, shape, minval=0.0, maxval=1.0)
  tail = 1.0 - (1.0 - p) ** max_len  # P(l <= max_len)
  # Inverse CDF: P(l <= k) = 1 - (1 - p)^k.
  lengths = 1 + jnp.floor(jnp.log1p(-u * tail) / jnp.log1p(-p))
  return jnp.clip(lengths, 1, max_len).astype(jnp.int32)


def text_maskable(tokens: jnp.ndarray, segment_ids: jnp.ndarray,
                  special_ids: Tuple[int, ...] = (PAD_ID, EOS_ID)) -> jnp.ndarray:
  """bool [batch, length]: real tokens (segment id > 0) that are not special ids."""
  maskable = segment_ids > 0
  for special in special_ids:
    maskable = maskable & (tokens != special)
  return maskable


def text_span_mask(key: jax.Array, tokens: jnp.ndarray, maskable: jnp.ndarray,
                   config: TextMaskConfig, *, vocab_size: int, mask_id: int,
                   random_ids: Optional[Tuple[int, int]] = None) -> TextMaskResult:
  """SpanBERT masking of token rows.

  Args:
    key: PRNG key.
    tokens: int32 [batch, length] original token ids.
    maskable: bool [batch, length] positions that may be masked (see `text_maskable`).
    config: masking parameters.
    vocab_size: size of the embedding table.
    mask_id: id written at positions replaced by the mask token.
    random_ids: [low, high) ids random replacements are drawn from (uniformly, `mask_id` left out
      if it lies inside): the real SentencePiece pieces after PAD/EOS/UNK. None =
      [max(special_ids) + 1, vocab_size).

  Returns:
    `TextMaskResult(inputs, mask)`. Each row with n maskable tokens has exactly
    max(1, round(mask_rate * n)) masked positions (0 when n = 0) as long as mask_rate <= 0.5;
    above that a row may fall short when it needs more spans than there are gaps between them.
  """
  _check_rank2("tokens", tokens)
  if maskable.shape != tokens.shape:
    raise ValueError(f"maskable shape {maskable.shape} != tokens shape {tokens.shape}")
  low = max(config.special_ids) + 1 if config.special_ids else 0
  if not low <= mask_id < vocab_size:
    raise ValueError(f"mask_id {mask_id} must lie in [{low}, vocab_size={vocab_size})")
  rand_low, rand_high = (low, vocab_size) if random_ids is None else random_ids
  inside = int(rand_low <= mask_id < rand_high)
  if not 0 <= rand_low < rand_high <= vocab_size or rand_high - rand_low - inside < 1:
    raise ValueError(f"random_ids={(rand_low, rand_high)} leaves no ids for random replacement "
                     f"(vocab_size={vocab_size}, mask_id={mask_id})")
  maskable = maskable.astype(bool)
  batch, length = tokens.shape
  len_key, slot_key, action_key, random_key = jax.random.split(key, 4)

  num = jnp.sum(maskable, axis=1)  # [batch] maskable tokens per row
  budget = jnp.where(num > 0, jnp.maximum(jnp.round(config.mask_rate * num), 1), 0)
  budget = budget.astype(jnp.int32)

  # At most `length` spans (each has >= 1 token). Span k covers `eff[k]` tokens: drawn lengths,
  # cut so that the spans add up to exactly `budget`.
  lengths = _truncated_geometric(len_key, (batch, length), config.geometric_p, config.max_span)
  before = jnp.cumsum(lengths, axis=1) - lengths
  eff = jnp.clip(budget[:, None] - before, 0, lengths)  # [batch, spans]
  active = eff > 0
  num_spans = jnp.sum(active, axis=1)

  # Placement in "compressed" coordinates (the row's maskable tokens only): the n - budget kept
  # tokens form num_spans + 1 gaps. Distinct sorted gap slots in [0, n - budget] give every span
  # its count of kept tokens before it, so spans never overlap or touch.
  unmasked = num - budget
  slots = jnp.arange(length + 1)[None, :]
  noise = jax.random.uniform(slot_key, (batch, length + 1))
  noise = jnp.where(slots <= unmasked[:, None], noise, 2.0 + noise)
  chosen = jnp.argsort(noise, axis=1)[:, :length]  # [batch, spans]
  chosen = jnp.sort(jnp.where(active, chosen, 2 * length + 2), axis=1)
  eff_before = jnp.cumsum(eff, axis=1) - eff
  start = chosen + eff_before  # compressed start of span k
  end = start + eff

  rows = jnp.arange(batch)[:, None]
  clip_idx = lambda idx: jnp.clip(idx, 0, length)
  act = active.astype(jnp.int32)
  delta = jnp.zeros((batch, length + 1), jnp.int32)
  delta = delta.at[rows, clip_idx(start)].add(act).at[rows, clip_idx(end)].add(-act)
  covered = (jnp.cumsum(delta, axis=1) > 0)[:, :length]  # compressed mask
  span_index = jnp.cumsum(jnp.zeros((batch, length + 1), jnp.int32)
                          .at[rows, clip_idx(start)].add(act), axis=1)[:, :length] - 1

  # Back to token positions.
  rank = jnp.clip(_rank_among(maskable), 0, length - 1)
  mask = maskable & jnp.take_along_axis(covered, rank, axis=1)
  span_of = jnp.clip(jnp.take_along_axis(span_index, rank, axis=1), 0, length - 1)

  # 80/10/10 decided once per span.
  u = jax.random.uniform(action_key, (batch, length))
  u = jnp.take_along_axis(u, span_of, axis=1)
  use_mask = mask & (u < config.replace_with_mask)
  use_random = mask & (u >= config.replace_with_mask) & (
      u < config.replace_with_mask + config.replace_with_random)
  # Uniform over [rand_low, rand_high) without mask_id.
  rand = jax.random.randint(random_key, (batch, length), rand_low, rand_high - inside)
  if inside:
    rand = rand + (rand >= mask_id).astype(rand.dtype)
  inputs = jnp.where(use_mask, jnp.asarray(mask_id, tokens.dtype),
                     jnp.where(use_random, rand.astype(tokens.dtype), tokens))
  return TextMaskResult(inputs=inputs, mask=mask)


def check_mask_id(vocabulary: Any, mask_id: int, vocab_size: int) -> int:
  """Checks at start-up that `mask_id` is no real SentencePiece piece; returns the piece count.

  Args:
    vocabulary: a seqio vocabulary (SentencePieceVocabulary: pieces, then `extra_ids`); anything
      with `vocab_size`, `extra_ids` and `decode`.
    mask_id: the id the model writes at masked text positions.
    vocab_size: the encoder's embedding rows.

  Returns:
    The number of real pieces (random replacement tokens are drawn below it).

  Raises:
    ValueError: the vocabulary does not fit the embedding or the mask id is a real piece.
  """
  # seqio writes its extra ids into the SentencePiece proto, so the real pieces are the ids below
  # vocab_size - extra_ids (`_base_vocab_size` counts the extra ids too).
  pieces = int(vocabulary.vocab_size) - int(getattr(vocabulary, "extra_ids", 0))
  if vocabulary.vocab_size > vocab_size:
    raise ValueError(f"the text vocabulary has {vocabulary.vocab_size} ids but the encoder only "
                     f"{vocab_size} embedding rows: raise make_encoder_config.vocab_size")
  if mask_id < pieces:
    raise ValueError(
        f"mask_token_id={mask_id} is the real SentencePiece piece "
        f"{vocabulary.decode([mask_id])!r} (the model has {pieces} pieces): use an id >= {pieces}, "
        "e.g. leave make_model.mask_token_id = None with extra_ids >= 1 or "
        "make_encoder_config.vocab_size = pieces + 1")
  return pieces
