"""Transformer decoder for sequence-to-sequence heads (speech translation, attention-based ASR).

    targets_in [B, L] (targets shifted right, BOS = PAD id 0) --embedding * sqrt(D) + sinusoid-->
      num_layers x [pre-LN causal self-attention, cross-attention to the encoder memory, FFN]
      --LayerNorm--> logits [B, L, V] (tied to the target embedding, or an own projection)

SLAM (arXiv 2110.10329) and w2v-BERT fine-tune speech translation with a small Transformer
decoder of 4 layers at model dim 384 on the pre-trained encoder (DECODER_PRESETS['paper'];
heads and FFN width are not given there: 6 heads of 64 and a 4x FFN here, verify before quoting).

The decoder has its own target embedding over a target-language SentencePiece vocabulary, so
it does not share a vocabulary with the encoder. Incremental decoding keeps an explicit cache
(a plain pytree, see `init_cache`): per layer the self-attention keys/values written so far and the
cross-attention keys/values of the memory, computed once. `decode_step` on that cache gives the
same logits as the teacher-forced call (tests/models/test_decoder.py).

Parameter names (checkpoint format): embedding [V, D], memory_projection, layer_{i}/{self_attention,
cross_attention}/{query,key,value,out}, layer_{i}/{mlp_in,mlp_out}, layer_{i}/norm_{1,2,3},
final_norm, (logits when not tied). Logical axes as the encoder's: vocab, embed, heads, kv, mlp.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from slam_jax.models import layers as layers_lib

_NEG_INF = -1e30
Cache = Dict[str, Any]

DECODER_PRESETS = {
    # The paper's ST decoder: 4 layers, dim 384 (SLAM Sec. 4.3 / w2v-BERT; heads, FFN: verify).
    "paper": dict(model_dim=384, num_heads=6, ffn_dim=1536, num_layers=4),
    # Tests and the offline demo: seconds on CPU.
    "tiny": dict(model_dim=32, num_heads=2, ffn_dim=64, num_layers=1),
}


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Architecture of the Transformer decoder (gin binds `make_decoder_config`).

  Attributes:
    vocab_size: target vocabulary size (SentencePiece ids; 0 = PAD = BOS, 1 = EOS).
    model_dim: D (even, divisible by num_heads).
    num_heads: attention heads (self and cross).
    ffn_dim: hidden width of the feed-forward block.
    num_layers: decoder layers.
    dropout_rate: residual, feed-forward and embedding dropout.
    attention_dropout_rate: dropout on attention probabilities.
    tie_embedding: output logits reuse the target embedding (else an own `logits` projection).
    dtype: compute dtype 'float32' | 'bfloat16' (params fp32, logits fp32).
  """
  vocab_size: int
  model_dim: int = 384
  num_heads: int = 6
  ffn_dim: int = 1536
  num_layers: int = 4
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  tie_embedding: bool = True
  dtype: str = "float32"

  def __post_init__(self):
    for name in ("vocab_size", "model_dim", "num_heads", "ffn_dim", "num_layers"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"DecoderConfig.{name} must be a positive int, got {value!r}")
    if self.model_dim % self.num_heads or self.model_dim % 2:
      raise ValueError(f"DecoderConfig.model_dim ({self.model_dim}) must be even and divisible "
                       f"by num_heads ({self.num_heads})")
    for name in ("dropout_rate", "attention_dropout_rate"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"DecoderConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")
    layers_lib.compute_dtype(self.dtype)  # Validates the name.

  @property
  def compute_dtype(self):
    return layers_lib.compute_dtype(self.dtype)


@gin.configurable(module="slam_jax.models.decoder")
def make_decoder_config(vocab_size: int = gin.REQUIRED, preset: str = "paper",
                        model_dim: Optional[int] = None, num_heads: Optional[int] = None,
                        ffn_dim: Optional[int] = None, num_layers: Optional[int] = None,
                        dropout_rate: float = 0.1, attention_dropout_rate: float = 0.0,
                        tie_embedding: bool = True, dtype: str = "float32") -> DecoderConfig:
  """Gin entry point: a size preset ('paper' = 4 x 384, 'tiny') plus explicit field overrides.

  `vocab_size` must be the target SentencePiece model's size plus seqio's extra ids.
  """
  if preset not in DECODER_PRESETS:
    raise ValueError(f"make_decoder_config.preset={preset!r}: use one of {sorted(DECODER_PRESETS)}")
  sizes = dict(DECODER_PRESETS[preset])
  for name, value in (("model_dim", model_dim), ("num_heads", num_heads), ("ffn_dim", ffn_dim),
                      ("num_layers", num_layers)):
    if value is not None:
      sizes[name] = value
  return DecoderConfig(vocab_size=vocab_size, dropout_rate=dropout_rate,
                       attention_dropout_rate=attention_dropout_rate,
                       tie_embedding=tie_embedding, dtype=dtype, **sizes)


def shift_right(targets: jnp.ndarray, bos_id: int = 0) -> jnp.ndarray:
  """Decoder inputs for teacher forcing: [B, L] targets -> [BOS, t_0, ..., t_{L-2}]."""
  start = jnp.full(targets.shape[:-1] + (1,), bos_id, targets.dtype)
  return jnp.concatenate([start, targets[..., :-1]], axis=-1)


def causal_mask(length: int) -> jnp.ndarray:
  """bool [1, 1, L, L]: query i sees keys j <= i."""
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None]


class Attention(nn.Module):
  """Multi-head dot-product attention; keys/values come in projected (see `project_kv`)."""
  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  def setup(self):
    proj = lambda name: layers_lib.dense((self.num_heads, self.head_dim), ("embed", "heads", "kv"),
                                         dtype=self.dtype, name=name)
    self.query, self.key, self.value = proj("query"), proj("key"), proj("value")
    self.out = layers_lib.dense(self.num_heads * self.head_dim, ("heads", "kv", "embed"),
                                dtype=self.dtype, axis=(-2, -1), name="out")
    self.dropout = nn.Dropout(self.dropout_rate)

  def project_kv(self, x: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """x [B, S, E] -> keys, values [B, S, H, d]."""
    return self.key(x), self.value(x)

  def __call__(self, x: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, mask: jnp.ndarray,
               deterministic: bool = True) -> jnp.ndarray:
    """x [B, Q, E] attends to k, v [B, K, H, d] where mask (bool, broadcast to [B, 1, Q, K]).

    Returns [B, Q, E]; a query with no visible key outputs zeros.
    """
    q = self.query(x) * jnp.asarray(self.head_dim ** -0.5, self.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    logits = jnp.where(mask, logits, _NEG_INF)
    probs = jax.nn.softmax(logits, axis=-1) * jnp.any(mask, axis=-1, keepdims=True)
    probs = self.dropout(probs, deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
    return self.out(out)


class DecoderLayer(nn.Module):
  """Pre-LN block: causal self-attention, cross-attention to the memory, feed-forward."""
  config: DecoderConfig

  def setup(self):
    cfg = self.config
    dtype = cfg.compute_dtype
    head_dim = cfg.model_dim // cfg.num_heads
    self.self_attention = Attention(cfg.num_heads, head_dim, cfg.attention_dropout_rate, dtype)
    self.cross_attention = Attention(cfg.num_heads, head_dim, cfg.attention_dropout_rate, dtype)
    self.norm_1 = layers_lib.layer_norm(dtype)
    self.norm_2 = layers_lib.layer_norm(dtype)
    self.norm_3 = layers_lib.layer_norm(dtype)
    self.mlp_in = layers_lib.dense(cfg.ffn_dim, ("embed", "mlp"), dtype=dtype)
    self.mlp_out = layers_lib.dense(cfg.model_dim, ("mlp", "embed"), dtype=dtype)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def memory_kv(self, memory: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """Cross-attention keys/values [B, S, H, d] of the (projected) memory."""
    return self.cross_attention.project_kv(memory)

  def _rest(self, x, mem_k, mem_v, memory_mask, deterministic):
    y = self.cross_attention(self.norm_2(x), mem_k, mem_v, memory_mask, deterministic)
    x = layers_lib.constrain(x + self.dropout(y, deterministic=deterministic))
    y = self.mlp_out(self.dropout(nn.relu(self.mlp_in(self.norm_3(x))),
                                  deterministic=deterministic))
    return layers_lib.constrain(x + self.dropout(y, deterministic=deterministic))

  def __call__(self, x, mem_k, mem_v, memory_mask, deterministic=True):
    """Teacher-forced: x [B, L, D] (all target positions at once, causal)."""
    h = self.norm_1(x)
    k, v = self.self_attention.project_kv(h)
    y = self.self_attention(h, k, v, causal_mask(x.shape[1]), deterministic)
    x = layers_lib.constrain(x + self.dropout(y, deterministic=deterministic))
    return self._rest(x, mem_k, mem_v, memory_mask, deterministic)

  def step(self, x, step, cache, memory_mask):
    """One position: x [B, 1, D] at index `step`; cache {key, value [B, Lmax, H, d], mem_key,
    mem_value}. Returns (x, updated cache)."""
    h = self.norm_1(x)
    k, v = self.self_attention.project_kv(h)
    keys = jax.lax.dynamic_update_slice_in_dim(cache["key"], k.astype(cache["key"].dtype), step,
                                               axis=1)
    values = jax.lax.dynamic_update_slice_in_dim(cache["value"], v.astype(cache["value"].dtype),
                                                 step, axis=1)
    visible = (jnp.arange(keys.shape[1]) <= step)[None, None, None, :]
    y = self.self_attention(h, keys, values, visible)
    x = x + y
    x = self._rest(x, cache["mem_key"], cache["mem_value"], memory_mask, True)
    return x, dict(cache, key=keys, value=values)


class TransformerDecoder(nn.Module):
  """The decoder (see module docstring). Attributes: config: DecoderConfig."""
  config: DecoderConfig

  def setup(self):
    cfg = self.config
    dtype = cfg.compute_dtype
    self.embedding = self.param(
        "embedding", layers_lib.partitioned(nn.initializers.normal(stddev=cfg.model_dim ** -0.5),
                                            ("vocab", "embed")),
        (cfg.vocab_size, cfg.model_dim), jnp.float32)
    self.memory_projection = layers_lib.dense(cfg.model_dim, ("mlp", "embed"), dtype=dtype)
    self.layers = [DecoderLayer(cfg, name=f"layer_{i}") for i in range(cfg.num_layers)]
    self.final_norm = layers_lib.layer_norm(dtype)
    self.dropout = nn.Dropout(cfg.dropout_rate)
    if not cfg.tie_embedding:
      self.logits_projection = layers_lib.dense(cfg.vocab_size, ("embed", "vocab"), dtype=dtype,
                                                name="logits")

  def _embed(self, tokens: jnp.ndarray, positions: jnp.ndarray) -> jnp.ndarray:
    cfg = self.config
    x = jnp.take(self.embedding, tokens, axis=0) * jnp.float32(cfg.model_dim ** 0.5)
    x = x + layers_lib.sinusoidal_embedding(positions, cfg.model_dim)
    return x.astype(cfg.compute_dtype)

  def _logits(self, x: jnp.ndarray) -> jnp.ndarray:
    x = self.final_norm(x)
    if self.config.tie_embedding:
      return jnp.einsum("...d,vd->...v", x, self.embedding.astype(x.dtype),
                        preferred_element_type=jnp.float32)
    return self.logits_projection(x).astype(jnp.float32)

  def project_memory(self, memory: jnp.ndarray) -> jnp.ndarray:
    """Encoder output [B, S, E] -> [B, S, D] (the decoder's width)."""
    return self.memory_projection(memory.astype(self.config.compute_dtype))

  def __call__(self, targets_in: jnp.ndarray, memory: jnp.ndarray, memory_valid: jnp.ndarray,
               deterministic: bool = True) -> jnp.ndarray:
    """Teacher-forced logits.

    Args:
      targets_in: int [B, L] decoder inputs (`shift_right(targets)`).
      memory: [B, S, E] encoder output (any width E).
      memory_valid: bool [B, S] valid memory positions.
      deterministic: disables dropout (else needs rngs={'dropout': key}).

    Returns:
      float32 logits [B, L, V]; position i predicts targets[i] from targets_in[:i+1].
    """
    memory = self.project_memory(memory)
    memory_mask = memory_valid.astype(bool)[:, None, None, :]
    positions = jnp.broadcast_to(jnp.arange(targets_in.shape[1]), targets_in.shape)
    x = self.dropout(self._embed(targets_in, positions), deterministic=deterministic)
    for layer in self.layers:
      k, v = layer.memory_kv(memory)
      x = layer(x, k, v, memory_mask, deterministic)
    return self._logits(x)

  def init_cache(self, memory: jnp.ndarray, memory_valid: jnp.ndarray, max_length: int) -> Cache:
    """The decoding cache for `max_length` target positions (every leaf has leading dim B)."""
    cfg = self.config
    memory = self.project_memory(memory)
    b = memory.shape[0]
    head_dim = cfg.model_dim // cfg.num_heads
    zeros = jnp.zeros((b, max_length, cfg.num_heads, head_dim), cfg.compute_dtype)
    cache: Cache = {"memory_valid": memory_valid.astype(bool)}
    for i, layer in enumerate(self.layers):
      k, v = layer.memory_kv(memory)
      cache[f"layer_{i}"] = {"key": zeros, "value": zeros, "mem_key": k, "mem_value": v}
    return cache

  def decode_step(self, tokens: jnp.ndarray, step: jnp.ndarray,
                  cache: Cache) -> Tuple[jnp.ndarray, Cache]:
    """One incremental step (no dropout).

    Args:
      tokens: int [B] the decoder input at position `step` (BOS at step 0).
      step: int scalar position.
      cache: from `init_cache` or the previous step.

    Returns:
      (float32 logits [B, V] for the next token, updated cache).
    """
    memory_mask = cache["memory_valid"][:, None, None, :]
    positions = jnp.broadcast_to(step, tokens.shape)[:, None]
    x = self._embed(tokens[:, None], positions)
    new_cache: Cache = {"memory_valid": cache["memory_valid"]}
    for i, layer in enumerate(self.layers):
      x, new_cache[f"layer_{i}"] = layer.step(x, step, cache[f"layer_{i}"], memory_mask)
    return self._logits(x)[:, 0], new_cache
