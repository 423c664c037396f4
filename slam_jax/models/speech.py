"""Speech front of the encoder: the convolutional feature encoder and the length arithmetic.

Feature encoder (w2v-BERT, Chung et al. 2021, Sec. 2; SLAM, Bapna et al. 2021, Sec. 2): two 2-D
convolutions over [time, mel], kernel 3x3, stride 2x2, ReLU (a 4x time reduction), flattened over
(mel, channels) and projected to the model dimension.

Padding: each conv pads exactly one frame on each side of both axes (fixed, independent of the array
length, unlike 'SAME' whose split depends on the length's parity). Output frame t reads input frames
2t-1, 2t, 2t+1, so with L valid frames the valid outputs are t < ceil(L / 2); the one that reads
frame L sees a zero, exactly as the conv's own zero padding would if the array ended at L. The input
is zeroed at padding and each conv's output is re-masked before the next conv (the bias and ReLU
would otherwise make padded frames nonzero), so valid outputs never depend on padded frames.
"""

from typing import Tuple

import flax.linen as nn
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
      x = nn.Conv(
          self.channels, (KERNEL, KERNEL), strides=(STRIDE, STRIDE),
          padding=((PAD, PAD), (PAD, PAD)), dtype=self.dtype, param_dtype=jnp.float32,
          kernel_init=layers_lib.partitioned(nn.initializers.lecun_normal(),
                                             ("conv", None, None, None)),
          bias_init=layers_lib.partitioned(nn.initializers.zeros, (None,)),
          name=f"conv_{i}")(x)
      x = nn.relu(x)
      lengths = _conv_out(lengths)
      valid = jnp.arange(x.shape[1], dtype=jnp.int32)[None, :] < lengths[:, None]
      x = jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype))
    b, t, f, c = x.shape
    x = x.reshape(b, t, f * c)
    x = layers_lib.dense(self.model_dim, (None, "embed"), dtype=self.dtype, name="proj")(x)
    x = jnp.where(valid[:, :, None], x, jnp.zeros((), x.dtype))
    return layers_lib.constrain(x), valid
