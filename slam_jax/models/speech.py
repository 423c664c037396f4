"""Speech front of the encoder: the convolutional feature encoder (SLAM's default), the stacked-frame
front end (w2v-BERT 2.0's, `StackedFrames`) and their length arithmetic.

Feature encoder (w2v-BERT, Chung et al. 2021, Sec. 2; SLAM, Bapna et al. 2021, Sec. 2): two 2-D
convolutions over [time, mel], kernel 3x3, stride 2x2, ReLU (a 4x time reduction), flattened over
(mel, channels) and projected to the model dimension.

Padding: each conv pads exactly one frame on each side of both axes (fixed, independent of the array
length, unlike 'SAME' whose split depends on the length's parity). Output frame t reads input frames
2t-1, 2t, 2t+1, so with L valid frames the valid outputs are t < ceil(L / 2); the one that reads
frame L sees a zero, exactly as the conv's own zero padding would if the array ended at L. The input
is zeroed at padding and each conv's output is re-masked before the next conv (the bias and ReLU
would otherwise make padded frames nonzero), so valid outputs never depend on padded frames.

On XLA:CPU the convolutions run as strided patches times the kernel matrix (`Conv2D`). XLA:CPU's
own 2-D convolution is fast on its own (the 128-channel conv's forward+backward at ~200 GFLOP/s;
the patches ~15% faster still) but ~65x slower inside a loop, such as gradient accumulation's scan
over microbatches. Other backends keep XLA's conv.
"""

from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.models import layers as layers_lib

KERNEL = 3
STRIDE = 2
PAD = 1
NUM_CONVS = 2


def _conv_out(n):
  """Output length of one conv on n frames (numpy or jax int arrays, or ints)."""
  return (n + 2 * PAD - KERNEL) // STRIDE + 1


def subsampled_lengths(lengths):
  """Number of valid frames after the feature encoder, per utterance.

  Exactly the conv arithmetic, (n + 2*pad - kernel) // stride + 1 applied twice, which equals
  ceil(n / 4) for n >= 0 (and 0 for an empty utterance).

  Args:
    lengths: int array [batch] (numpy or jax) or an int.

  Returns:
    int32 array (or int) of the same shape.
  """
  n = lengths
  for _ in range(NUM_CONVS):
    n = _conv_out(n)
  if isinstance(n, (int, np.integer)):
    return max(int(n), 0)
  xp = jnp if isinstance(n, jnp.ndarray) else np
  return xp.maximum(n, 0).astype(xp.int32)


def subsampled_frames(num_frames: int) -> int:
  """Static output length T' of the feature encoder for an input array of T frames."""
  return subsampled_lengths(int(num_frames))


def subsampled_mask(speech_mask: jnp.ndarray) -> jnp.ndarray:
  """bool [batch, T'] mask of valid frames after subsampling, from the int [batch, T] frame mask.

  The frame mask is taken to be a prefix mask (valid frames first); its sum is the length.
  """
  lengths = jnp.sum(speech_mask.astype(jnp.int32), axis=-1)
  t_out = subsampled_frames(speech_mask.shape[-1])
  return jnp.arange(t_out, dtype=jnp.int32)[None, :] < subsampled_lengths(lengths)[:, None]


def strided_patches(x: jnp.ndarray, size: int, stride: int, pad: int) -> jnp.ndarray:
  """Every size x size window of x [b, T, F, C] at `stride`, zero-padded by `pad` on both sides of
  T and F: [b, T', F', size * size * C], flattened (row, column, channel) like an HWIO kernel's
  leading axes, so `patches @ kernel.reshape(-1, C_out)` is the convolution."""
  b, t, f, c = x.shape
  t_out = (t + 2 * pad - size) // stride + 1
  f_out = (f + 2 * pad - size) // stride + 1
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  windows = [x[:, i:i + stride * (t_out - 1) + 1:stride, j:j + stride * (f_out - 1) + 1:stride]
             for i in range(size) for j in range(size)]
  return jnp.stack(windows, axis=-2).reshape(b, t_out, f_out, size * size * c)


def _conv_as_matmul() -> bool:
  """Whether `Conv2D` runs as patches x kernel matrix: on XLA:CPU (see the module docstring)."""
  return jax.default_backend() == "cpu"


class Conv2D(nn.Module):
  """KERNEL x KERNEL conv, stride STRIDE, padding PAD, over [batch, time, mel, channels].

  Parameters as flax's nn.Conv ('kernel' [k, k, C_in, C_out] HWIO, 'bias' [C_out]; fp32).

  Attributes:
    features: output channels.
    dtype: compute dtype.
  """
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """x [b, T, F, C_in] -> [b, T', F', features] with T' = _conv_out(T), F' = _conv_out(F)."""
    kernel = self.param("kernel", layers_lib.partitioned(nn.initializers.lecun_normal(),
                                                         ("conv", None, None, None)),
                        (KERNEL, KERNEL, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", layers_lib.partitioned(nn.initializers.zeros, (None,)),
                      (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    if _conv_as_matmul():
      y = layers_lib.project(strided_patches(x, KERNEL, STRIDE, PAD),
                             kernel.reshape(-1, self.features), n_in=1)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (STRIDE, STRIDE), ((PAD, PAD), (PAD, PAD)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)[None, None, None, :]


class FeatureEncoder(nn.Module):
  """Two 3x3 stride-2 conv + ReLU layers over [time, mel], then a linear projection.

  Attributes:
    model_dim: output size D.
    channels: conv channels C.
    dtype: compute dtype.
  """
  model_dim: int
  channels: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, speech_features: jnp.ndarray,
               speech_mask: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """Encodes log-mel frames.

    Args:
      speech_features: float [batch, T, mel].
      speech_mask: int [batch, T]; 1 = real frame (a prefix), 0 = padding.

    Returns:
      (features [batch, T', model_dim] in the compute dtype, zero at padding;
       valid bool [batch, T']), T' = subsampled_frames(T).
    """
    mask = speech_mask.astype(jnp.int32)
    lengths = jnp.sum(mask, axis=-1)
    x = jnp.where(mask[:, :, None] > 0, speech_features, 0.0).astype(self.dtype)[..., None]
    for i in range(NUM_CONVS):
      x = Conv2D(self.channels, dtype=self.dtype, name=f"conv_{i}")(x)
      x = nn.relu(x)
      lengths = _conv_out(lengths)
      valid = jnp.arange(x.shape[1], dtype=jnp.int32)[None, :] < lengths[:, None]
      x = jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype))
    b, t, f, c = x.shape
    x = x.reshape(b, t, f * c)
    x = layers_lib.dense(self.model_dim, (None, "embed"), dtype=self.dtype, name="proj")(x)
    x = jnp.where(valid[:, :, None], x, jnp.zeros((), x.dtype))
    return layers_lib.constrain(x), valid


def stacked_mask(speech_mask: jnp.ndarray, stack: int) -> jnp.ndarray:
  """bool [batch, T // stack] valid steps of `StackedFrames` from the int [batch, T] prefix mask:
  a step is valid when all its `stack` frames are (HF's SeamlessM4TFeatureExtractor likewise
  keeps floor(L / 2) steps of an utterance of L frames)."""
  lengths = jnp.sum(speech_mask.astype(jnp.int32), axis=-1) // stack
  t_out = speech_mask.shape[-1] // stack
  return jnp.arange(t_out, dtype=jnp.int32)[None, :] < lengths[:, None]


class StackedFrames(nn.Module):
  """`stack` consecutive frames concatenated -> LayerNorm -> linear projection (w2v-BERT 2.0's
  front end: HF Wav2Vec2BertFeatureProjection on SeamlessM4TFeatureExtractor's 2 x 80 = 160-dim
  steps). A trailing incomplete group of frames is dropped.

  Params: norm (scale, bias [stack * mel]), proj (kernel [stack * mel, D], bias [D]).

  Attributes:
    model_dim: output size D.
    stack: frames per step.
    epsilon: the LayerNorm's variance floor.
    dtype: compute dtype.
  """
  model_dim: int
  stack: int = 2
  epsilon: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, speech_features: jnp.ndarray,
               speech_mask: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray]:
    """[batch, T, mel] frames, int [batch, T] prefix mask -> (features [batch, T // stack, D] in
    the compute dtype, zero at padding; valid bool [batch, T // stack])."""
    b, t, f = speech_features.shape
    t_out = t // self.stack
    x = jnp.where(speech_mask[:, :, None] > 0, speech_features, 0.0)
    x = x[:, :t_out * self.stack].reshape(b, t_out, self.stack * f)
    x = layers_lib.layer_norm(self.dtype, name="norm", epsilon=self.epsilon,
                              axis_name=None)(x.astype(self.dtype))
    x = layers_lib.dense(self.model_dim, (None, "embed"), dtype=self.dtype, name="proj")(x)
    valid = stacked_mask(speech_mask, self.stack)
    x = jnp.where(valid[:, :, None], x, jnp.zeros((), x.dtype))
    return layers_lib.constrain(x), valid
