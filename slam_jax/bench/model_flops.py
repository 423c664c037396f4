"""Analytic model FLOPs of the SLAM encoder and its pre-training step (what MFU is measured with).

Counts multiply-adds of matmuls, einsums and convolutions as 2 FLOPs each; elementwise work (layer
norms, softmax, activations, masking, the optimizer update) is not model FLOPs (the MFU convention
of PaLM / MaxText). A train step is forward + backward = 3x the forward, except where the backward
needs only the weight gradient (the first convolution of the feature encoder: 2x).

Conformer layer, forward, on N = B*T positions of width D (H heads of size D/H, FFN width F,
depthwise kernel K, relative distances clipped to M, R = min(2M + 1, 2T - 1) distinct distances):

  feed-forward modules (two, half-step)    2 x (2*N*D*F + 2*N*F*D)   = 8 N D F
  attention projections q, k, v, out       4 x 2*N*D*D               = 8 N D^2
  content logits (q+u) K^T                 2 * B * T * T * D
  probabilities x V                        2 * B * T * T * D
  relative-position term (q+v) . r         2 * B * T * R * D    (against the R-row table)
  position table projection                2 * R * D * D        (once per layer, batch-free)
  conv module: pointwise D -> 2D           2 * N * D * 2D       = 4 N D^2
               depthwise (K taps)          2 * N * D * K
               pointwise D -> D            2 * N * D * D

The relative term is counted against the R distinct distances the model needs (the gather path
computes exactly these; the Hugging Face peer computes all 2T - 1 distances unclipped).
"""

import dataclasses
from typing import Dict

from slam_jax.models import speech as speech_lib


@dataclasses.dataclass(frozen=True)
class StackDims:
  """Sizes a Conformer stack's FLOPs depend on (from an EncoderConfig)."""

  model_dim: int
  num_heads: int
  ffn_dim: int
  conv_kernel_size: int
  max_relative_distance: int

  @classmethod
  def from_config(cls, config) -> "StackDims":
    return cls(config.model_dim, config.num_heads, config.ffn_dim, config.conv_kernel_size,
               config.max_relative_distance)


def conformer_layer_flops(dims: StackDims, batch: int, length: int) -> Dict[str, float]:
  """Forward FLOPs of one Conformer layer on [batch, length] positions, by part."""
  b, t, d, f, k = batch, length, dims.model_dim, dims.ffn_dim, dims.conv_kernel_size
  n = b * t
  r = min(2 * dims.max_relative_distance + 1, 2 * t - 1)
  return {
      "ffn": 8.0 * n * d * f,
      "attention_projections": 8.0 * n * d * d,
      "attention_logits": 2.0 * b * t * t * d,
      "attention_values": 2.0 * b * t * t * d,
      "relative_position": 2.0 * b * t * r * d + 2.0 * r * d * d,
      "conv_pointwise": 6.0 * n * d * d,
      "conv_depthwise": 2.0 * n * d * k,
  }


def stack_forward_flops(dims: StackDims, num_layers: int, batch: int, length: int) -> float:
  """Forward FLOPs of `num_layers` Conformer layers."""
  return num_layers * sum(conformer_layer_flops(dims, batch, length).values())


def encoder_train_flops(dims: StackDims, num_layers: int, batch: int, length: int) -> float:
  """Model FLOPs of one train step of the Conformer stack alone (benchmark 'encoder' mode)."""
  return 3.0 * stack_forward_flops(dims, num_layers, batch, length)


def pretrain_train_flops(encoder_config, quantizer_config, batch: int, frames: int,
                         text_length: int, stm_pass: bool = False) -> Dict[str, float]:
  """Model FLOPs of one SLAM pre-training step (w2v-BERT + text + heads), by part (train, 3x fwd).

  Args:
    encoder_config: EncoderConfig.
    quantizer_config: QuantizerConfig (codebooks, code_dim).
    batch: rows.
    frames: log-mel frames per row (10 ms each).
    text_length: text tokens per row.
    stm_pass: STM runs on its own unmasked pass (`ObjectiveConfig.stm_pass == 'unmasked'`, with
      STM weighted in): the front end and both stacks run once more over the batch.

  Every row is computed at full length whatever its kind (a text row's speech slot is padding but
  still occupies the arrays), so this is the FLOPs the step executes for the padded batch.
  """
  cfg, q = encoder_config, quantizer_config
  d, c, mel = cfg.model_dim, cfg.subsampling_channels, cfg.num_mel_bins
  dims = StackDims.from_config(cfg)
  t1 = (frames + 2 * speech_lib.PAD - speech_lib.KERNEL) // speech_lib.STRIDE + 1
  f1 = (mel + 2 * speech_lib.PAD - speech_lib.KERNEL) // speech_lib.STRIDE + 1
  t2 = speech_lib.subsampled_frames(frames)
  f2 = (f1 + 2 * speech_lib.PAD - speech_lib.KERNEL) // speech_lib.STRIDE + 1
  taps = speech_lib.KERNEL * speech_lib.KERNEL
  code_dim, groups, entries = q.code_dim, q.num_groups, q.num_entries
  fwd = {
      "subsampling_conv0": 2.0 * batch * t1 * f1 * c * taps,  # 1 input channel; x2 below
      "subsampling_conv1": 2.0 * batch * t2 * f2 * c * taps * c,
      "subsampling_proj": 2.0 * batch * t2 * f2 * c * d,
      "input_projection": 2.0 * batch * t2 * d * d,
      "speech_stack": stack_forward_flops(dims, cfg.num_speech_layers, batch, t2),
      "shared_stack": stack_forward_flops(dims, cfg.num_shared_layers, batch, t2 + text_length),
      "quantizer": 2.0 * batch * t2 * d * groups * entries + 2.0 * batch * t2 * entries * code_dim,
      "contrastive": 2.0 * batch * t2 * d * code_dim + 2.0 * batch * t2 * t2 * code_dim,
      "speech_mlm_head": 2.0 * batch * t2 * d * groups * entries,
      "text_mlm_head": 2.0 * batch * text_length * d * (d + cfg.vocab_size),
      "stm_head": 2.0 * batch * d * (d + 1),
  }
  if stm_pass:
    fwd["stm_pass"] = sum(fwd[k] for k in ("subsampling_conv0", "subsampling_conv1",
                                             "subsampling_proj", "input_projection",
                                             "speech_stack", "shared_stack", "stm_head"))
  train = {name: 3.0 * value for name, value in fwd.items()}
  train["subsampling_conv0"] = 2.0 * fwd["subsampling_conv0"]  # no gradient for the input
  return train


def stack_flops_breakdown(dims: StackDims, num_layers: int, batch: int,
                          length: int) -> Dict[str, float]:
  """Train-step FLOPs of a stack by part (3x forward), for the report."""
  layer = conformer_layer_flops(dims, batch, length)
  return {name: 3.0 * num_layers * value for name, value in layer.items()}
