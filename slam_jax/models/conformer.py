"""Conformer block (Gulati et al., 2020) and a stack of them (scanned or unrolled, optional remat).

Block, pre-norm residuals (the macaron layout):
  x = x + 0.5 * FFN(LN(x))
  x = x + Dropout(MHSA_relpos(LN(x)))
  x = x + ConvModule(LN(x))   # pointwise -> GLU -> depthwise (segment-aware; centred, or causal
                              #   with `conv_causal`) -> norm -> swish -> pointwise
  x = x + 0.5 * FFN(LN(x))
  x = LN(x)

Every sub-block is position-wise except attention (masked by segment ids) and the depthwise conv
(which reads zero for neighbours in another segment or in padding), so outputs at valid positions do
not depend on padding.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from slam_jax.models import attention as attention_lib
from slam_jax.models import config as config_lib
from slam_jax.models import layers as layers_lib


class FeedForward(nn.Module):
  """LN -> dense(ffn_dim) -> swish -> dropout -> dense(model_dim) -> dropout."""
  config: config_lib.EncoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    cfg = self.config
    dtype = cfg.compute_dtype
    y = layers_lib.layer_norm(dtype, name="norm", epsilon=cfg.layer_norm_epsilon)(x)
    y = layers_lib.dense(cfg.ffn_dim, ("embed", "mlp"), dtype=dtype, name="wi")(y)
    y = nn.with_logical_constraint(y, ("batch", "length", "mlp"))
    y = nn.swish(y)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=self.deterministic)
    y = layers_lib.dense(cfg.model_dim, ("mlp", "embed"), dtype=dtype, name="wo")(y)
    return nn.Dropout(cfg.dropout_rate)(y, deterministic=self.deterministic)


class ConvModule(nn.Module):
  """LN -> pointwise(2D) -> GLU -> depthwise conv -> norm -> swish -> pointwise(D) -> dropout."""
  config: config_lib.EncoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray, segment_ids: jnp.ndarray) -> jnp.ndarray:
    cfg = self.config
    dtype = cfg.compute_dtype
    d = cfg.model_dim
    y = layers_lib.layer_norm(dtype, name="norm", epsilon=cfg.layer_norm_epsilon)(x)
    y = layers_lib.dense(2 * d, ("embed", "mlp"), dtype=dtype, use_bias=cfg.conv_bias,
                         name="pointwise_in")(y)
    y = nn.glu(y, axis=-1)
    kernel = self.param("depthwise_kernel",
                        layers_lib.partitioned(_depthwise_init, ("conv", "embed")),
                        (cfg.conv_kernel_size, d), jnp.float32)
    bias = None
    if cfg.conv_bias:
      bias = self.param("depthwise_bias",
                        layers_lib.partitioned(nn.initializers.zeros, ("embed",)),
                        (d,), jnp.float32).astype(dtype)
    y = layers_lib.depthwise_conv1d(y, kernel.astype(dtype), segment_ids, bias,
                                    causal=cfg.conv_causal)
    if cfg.conv_norm == "layer":
      y = layers_lib.layer_norm(dtype, name="conv_norm", epsilon=cfg.layer_norm_epsilon)(y)
    else:
      y = layers_lib.masked_group_norm(y, segment_ids > 0, cfg.conv_norm_groups)
      ones = layers_lib.partitioned(nn.initializers.ones, ("embed",))
      zeros = layers_lib.partitioned(nn.initializers.zeros, ("embed",))
      scale = self.param("conv_norm_scale", ones, (d,), jnp.float32)
      shift = self.param("conv_norm_bias", zeros, (d,), jnp.float32)
      y = (y * scale[None, None, :] + shift[None, None, :]).astype(dtype)
    y = nn.swish(y)
    y = layers_lib.dense(d, ("mlp", "embed"), dtype=dtype, use_bias=cfg.conv_bias,
                         name="pointwise_out")(y)
    return nn.Dropout(cfg.dropout_rate)(y, deterministic=self.deterministic)


def _depthwise_init(key, shape, dtype=jnp.float32):
  """Each channel's K taps ~ N(0, 1/K) (fan-in of a depthwise filter is K)."""
  return nn.initializers.normal(stddev=shape[0] ** -0.5)(key, shape, dtype)


class ConformerBlock(nn.Module):
  """One Conformer block. Returns (x, None) so it can be the body of `nn.scan`.

  Attributes:
    config: EncoderConfig.
    deterministic: disables dropout (set at construction so scan/remat see a static value).
  """
  config: config_lib.EncoderConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x, segment_ids, attn_mask, rel_index):
    """x [b,t,d]; segment_ids int [b,t] (0 = padding); attn_mask [b,1,t,t]; rel_index [b,t,t]."""
    cfg = self.config
    dtype = cfg.compute_dtype
    det = self.deterministic
    x = x.astype(dtype)
    x = layers_lib.constrain(x + 0.5 * FeedForward(cfg, det, name="ffn_in")(x))
    y = layers_lib.layer_norm(dtype, name="attn_norm", epsilon=cfg.layer_norm_epsilon)(x)
    y = attention_lib.RelativeSelfAttention(
        num_heads=cfg.num_heads, head_dim=cfg.model_dim // cfg.num_heads,
        max_relative_distance=cfg.max_relative_distance,
        dropout_rate=cfg.attention_dropout_rate, dtype=dtype,
        implementation=cfg.attention_implementation, position_term=cfg.position_term,
        shaw_distances=(cfg.shaw_left_distance, cfg.shaw_right_distance), name="attention")(
            y, attn_mask, rel_index, deterministic=det)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=det)
    x = layers_lib.constrain(x + y)
    x = layers_lib.constrain(x + ConvModule(cfg, det, name="conv")(x, segment_ids))
    x = layers_lib.constrain(x + 0.5 * FeedForward(cfg, det, name="ffn_out")(x))
    x = layers_lib.constrain(layers_lib.layer_norm(dtype, name="final_norm",
                                                     epsilon=cfg.layer_norm_epsilon)(x))
    return x, None


class ConformerStack(nn.Module):
  """`num_layers` Conformer blocks; scanned (params under 'layers', leading 'layers' axis) when
  `config.scan_layers`, else unrolled (params under 'layer_0', 'layer_1', ...) with identical math.

  Attributes:
    config: EncoderConfig (scan_layers, remat_policy, sizes).
    num_layers: depth of this stack.
  """
  config: config_lib.EncoderConfig
  num_layers: int

  @nn.compact
  def __call__(self, x: jnp.ndarray, segment_ids: jnp.ndarray, positions: jnp.ndarray,
               conv_segment_ids: Optional[jnp.ndarray] = None,
               deterministic: bool = True) -> jnp.ndarray:
    """Runs the stack.

    Args:
      x: [batch, length, model_dim].
      segment_ids: int [batch, length]; attention stays within a segment; 0 = padding.
      positions: int [batch, length]; position ids for relative distances.
      conv_segment_ids: int [batch, length]; segments the depthwise conv must not cross (defaults
        to segment_ids; the encoder passes ids that also separate speech from text).
      deterministic: disables dropout.

    Returns:
      [batch, length, model_dim] in the compute dtype, zero at padding (segment id 0).
    """
    cfg = self.config
    if conv_segment_ids is None:
      conv_segment_ids = segment_ids
    if cfg.position_term == "shaw":
      attn_mask = attention_lib.attention_mask(segment_ids)
      rel_index = attention_lib.shaw_index(positions, cfg.shaw_left_distance,
                                           cfg.shaw_right_distance)
    else:
      attn_mask, rel_index = attention_lib.attention_inputs(
          segment_ids, positions, cfg.max_relative_distance)
    block = ConformerBlock
    if cfg.remat_policy != "none":
      block = nn.remat(block, policy=layers_lib.remat_policy(cfg.remat_policy),
                       prevent_cse=not cfg.scan_layers)
    x = layers_lib.constrain(x.astype(cfg.compute_dtype))
    if cfg.scan_layers:
      scanned = nn.scan(
          block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, nn.broadcast, nn.broadcast), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = scanned(cfg, deterministic, name="layers")(x, conv_segment_ids, attn_mask, rel_index)
    else:
      for i in range(self.num_layers):
        x, _ = block(cfg, deterministic, name=f"layer_{i}")(x, conv_segment_ids, attn_mask,
                                                           rel_index)
    valid = (segment_ids > 0)[..., None]
    return jnp.where(valid, x, jnp.zeros((), x.dtype))
