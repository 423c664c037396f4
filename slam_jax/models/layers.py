"""Small building blocks shared by the encoder's modules.

Everything here is either a pure function or a thin flax module that takes plain typed arguments.
Parameters are annotated with logical axis names (t5x style; the mesh rules live in
`slam_jax.partitioning`): `embed`, `mlp`, `heads`, `kv`, `vocab`, `conv` (kernel taps) and `layers`
(the scan axis, added by `nn.scan`).
"""

import functools
from typing import Callable, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
from jax import ad_checkpoint
import jax.numpy as jnp
import numpy as np

# Logical axes of every [batch, length, embed] activation.
ACTIVATION_AXES = ("batch", "length", "embed")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Name of the depthwise conv's output for remat policies (`jax.ad_checkpoint.checkpoint_name`).
DEPTHWISE_OUTPUT = "depthwise_conv"

# remat policy name -> jax.checkpoint policy (None = save nothing: full recomputation).
REMAT_POLICIES = {
    "full": None,
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
    # Matmul outputs plus the depthwise conv's (31 shifted multiply-adds that XLA would otherwise
    # re-run inside every fusion of the recomputed norm and swish): the fastest on CPU, see
    # slam_jax/bench.py's README figures.
    "dots_and_depthwise_saveable": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_saveable,
        jax.checkpoint_policies.save_only_these_names(DEPTHWISE_OUTPUT)),
}
REMAT_CHOICES = ("none",) + tuple(REMAT_POLICIES)


def compute_dtype(name: str):
  """Maps a dtype name ('float32' | 'bfloat16') to the jnp dtype."""
  if name not in _DTYPES:
    raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {name!r}")
  return _DTYPES[name]


def remat_policy(name: str) -> Optional[Callable[..., bool]]:
  """Maps a remat policy name to a `jax.checkpoint_policies` entry (None for 'full')."""
  if name not in REMAT_POLICIES:
    raise ValueError(f"remat_policy must be one of {list(REMAT_CHOICES)}, got {name!r}")
  return REMAT_POLICIES[name]


def constrain(x: jnp.ndarray) -> jnp.ndarray:
  """Logical sharding constraint of a [batch, length, embed] activation (no-op without rules)."""
  return nn.with_logical_constraint(x, ACTIVATION_AXES)


def partitioned(init: Callable, axes: Sequence[Optional[str]]) -> Callable:
  """An initializer annotated with logical axis names."""
  return nn.with_logical_partitioning(init, tuple(axes))


def _single_cpu_device() -> bool:
  """XLA:CPU on one device: where this module's CPU-only formulations apply (on a mesh they would
  reshape sharded axes, which is also why `slam_jax.bench.memory`'s simulated meshes compile the
  plain forms)."""
  return jax.default_backend() == "cpu" and jax.device_count() == 1


def _materialised_weight_grads() -> bool:
  """Whether `project` hands XLA its weight gradient as a row-major (canonical) matmul."""
  return _single_cpu_device()


@jax.custom_vjp
def _project_2d(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
  return x @ w


def _project_2d_fwd(x, w):
  return x @ w, (x, w)


def _project_2d_bwd(residuals, dy):
  x, w = residuals
  dx = dy @ w.T
  # dw = x^T dy contracts the rows of both operands. XLA would fold a transpose into the dot as
  # "lhs column-major", which XLA:CPU's YNNPACK matmuls refuse, so the dot fell back to Eigen at
  # ~2/3 of the speed; the barrier keeps the smaller operand's transpose a materialised
  # row-major array (one copy) and the dot canonical.
  if x.shape[1] <= dy.shape[1]:
    dw = jax.lax.optimization_barrier(x.T) @ dy
  else:
    # The second barrier keeps XLA from turning transpose(dot) back into a column-major dot.
    dw = jax.lax.optimization_barrier(jax.lax.optimization_barrier(dy.T) @ x).T
  return dx, dw


_project_2d.defvjp(_project_2d_fwd, _project_2d_bwd)


def project(x: jnp.ndarray, kernel: jnp.ndarray, n_in: int) -> jnp.ndarray:
  """x [..., *in] contracted with kernel [*in, *out] (the trailing `n_in` axes of x) -> [..., *out].

  On XLA:CPU (one device) a custom VJP computes the kernel's gradient as a canonical row-major
  matmul (see `_project_2d_bwd`); elsewhere it is plain autodiff of the einsum.
  """
  batch_shape, in_shape = x.shape[:x.ndim - n_in], x.shape[x.ndim - n_in:]
  out_shape = kernel.shape[n_in:]
  if not _materialised_weight_grads():
    letters = "abcdefghijklmnopqrstuvw"
    batch = letters[:x.ndim - n_in]
    ins = letters[x.ndim - n_in:x.ndim]
    outs = letters[x.ndim:x.ndim + len(out_shape)]
    return jnp.einsum(f"{batch}{ins},{ins}{outs}->{batch}{outs}", x, kernel)
  x2 = x.reshape((int(np.prod(batch_shape)), int(np.prod(in_shape))))
  y = _project_2d(x2, kernel.reshape((x2.shape[1], int(np.prod(out_shape)))))
  return y.reshape(batch_shape + out_shape)


class DenseGeneral(nn.Module):
  """Contracts the trailing `len(axis)` input axes into `features` (int or tuple).

  Same parameter names and shapes as `nn.DenseGeneral` (`kernel` [*in, *out], `bias` [*out]), but
  the kernel is created at its full shape with its logical axes, so no reshape of a boxed
  parameter happens under sharding rules (flax's DenseGeneral reshapes a flat kernel at init,
  which trips the logical constraint of multi-axis kernels).
  """

  features: Union[int, Tuple[int, ...]]
  axes: Tuple[Optional[str], ...]
  axis: Union[int, Tuple[int, ...]] = -1
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  kernel_init: Optional[Callable] = None

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    n_in = len(axis)
    if sorted(a % x.ndim for a in axis) != list(range(x.ndim - n_in, x.ndim)):
      raise ValueError(f"DenseGeneral contracts trailing axes only; got axis={self.axis} "
                       f"for an input of rank {x.ndim}.")
    in_shape = x.shape[x.ndim - n_in:]
    kernel_shape = tuple(in_shape) + features
    if len(self.axes) != len(kernel_shape):
      raise ValueError(f"{self.name}: {len(self.axes)} logical axes {self.axes} for a kernel of "
                       f"shape {kernel_shape}.")
    init = self.kernel_init or nn.initializers.lecun_normal(
        in_axis=tuple(range(n_in)), out_axis=tuple(range(n_in, len(kernel_shape))))
    kernel = self.param("kernel", partitioned(init, self.axes), kernel_shape, jnp.float32)
    y = project(x.astype(self.dtype), kernel.astype(self.dtype), n_in)
    if self.use_bias:
      bias = self.param("bias", partitioned(nn.initializers.zeros, self.axes[n_in:]), features,
                        jnp.float32)
      y = y + jnp.reshape(bias.astype(self.dtype), (1,) * (y.ndim - len(features)) + features)
    return y


def dense(features, axes: Tuple[Optional[str], ...], *, dtype, use_bias: bool = True,
          axis=-1, name: Optional[str] = None, kernel_init=None) -> DenseGeneral:
  """A dense layer with fp32 params, `dtype` compute and logically partitioned kernel/bias.

  Args:
    features: output features (int or tuple).
    axes: logical names of the kernel's axes (input axes then output axes).
    dtype: compute dtype.
    use_bias: add a bias (named by the output axes).
    axis: input axes contracted (trailing).
    name: module name (stable: it is the checkpoint format).
    kernel_init: defaults to lecun_normal over the contracted axes.
  """
  return DenseGeneral(features=features, axes=tuple(axes), axis=axis, use_bias=use_bias,
                      dtype=dtype, kernel_init=kernel_init, name=name)


def layer_norm(dtype, name: Optional[str] = None, epsilon: float = 1e-6,
               axis_name: Optional[str] = "embed") -> nn.LayerNorm:
  """LayerNorm over the last axis (statistics in fp32), params named (axis_name,)."""
  return nn.LayerNorm(
      epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32,
      scale_init=partitioned(nn.initializers.ones, (axis_name,)),
      bias_init=partitioned(nn.initializers.zeros, (axis_name,)), name=name)


def sinusoidal_embedding(positions: jnp.ndarray, dim: int) -> jnp.ndarray:
  """Transformer sinusoidal embedding of (possibly negative) integer positions.

  Args:
    positions: int array of any shape [...].
    dim: even embedding size.

  Returns:
    float32 [..., dim]: sin of the first half of the frequencies, cos of the second half.
  """
  half = dim // 2
  inv_freq = np.exp(-np.log(10000.0) * np.arange(half, dtype=np.float32) / max(half - 1, 1))
  inv_freq = jnp.asarray(inv_freq, jnp.float32).reshape((1,) * positions.ndim + (half,))
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def neighbour_valid(segment_ids: jnp.ndarray, kernel_size: int,
                    left: Optional[int] = None) -> jnp.ndarray:
  """For each tap of a 1-D kernel: is the neighbour in the same (non-padding) segment?

  Args:
    segment_ids: int [batch, time]; 0 = padding.
    kernel_size: K.
    left: how many taps lie before the current frame (K//2, the default, for a centred kernel;
      K-1 for a causal one).

  Returns:
    bool [K, batch, time]: tap k of position t reads position t + k - left, and that is allowed
    only when the neighbour exists and carries the same segment id (> 0) as position t.
  """
  left = kernel_size // 2 if left is None else left
  time = segment_ids.shape[1]
  padded = jnp.pad(segment_ids, ((0, 0), (left, kernel_size - 1 - left)))  # outside: segment 0
  taps = [padded[:, k:k + time] for k in range(kernel_size)]
  same = jnp.stack(taps, axis=0) == segment_ids[None]
  return same & (segment_ids[None] > 0)


def _pad_time(x: jnp.ndarray, kernel_size: int, left: int) -> jnp.ndarray:
  """x [B, T, C] zero-padded by `left` frames before and K-1-left after along time."""
  return jnp.pad(x, ((0, 0), (left, kernel_size - 1 - left), (0, 0)))


def _tap(x_pad: jnp.ndarray, valid: jnp.ndarray, k) -> jnp.ndarray:
  """Tap k (a Python int, or traced inside a loop): x shifted by k - left along time, zero where
  `valid[k]` is False. `x_pad` is `_pad_time(x, K, left)`."""
  time = valid.shape[-1]
  shifted = jax.lax.dynamic_slice_in_dim(x_pad, k, time, axis=1)
  keep = jax.lax.dynamic_index_in_dim(valid, k, axis=0, keepdims=False)
  return jnp.where(keep[..., None], shifted, jnp.zeros((), x_pad.dtype))


def _shifted_taps(x: jnp.ndarray, valid: jnp.ndarray, left: int):
  """Yields (k, tap k) for every tap of the kernel (see `_tap`)."""
  x_pad = _pad_time(x, valid.shape[0], left)
  for k in range(valid.shape[0]):
    yield k, _tap(x_pad, valid, k)


def _shift_add(x: jnp.ndarray, kernel: jnp.ndarray, valid: jnp.ndarray,
               left: int) -> jnp.ndarray:
  """fp32 sum over taps k of tap_k(x) * kernel[k] (one fused loop: no per-tap arrays)."""
  acc = jnp.zeros(x.shape, jnp.float32)
  for k, tap in _shifted_taps(x, valid, left):
    acc = acc + tap.astype(jnp.float32) * kernel[k].astype(jnp.float32)[None, None, :]
  return acc


# Batch chunks of the CPU tap loops (see `_in_chunks`).
_CHUNKS = 2


def _loop_taps() -> bool:
  """Whether to run the taps in loops: only XLA:CPU needs it (see `_in_chunks`), and only on one
  device, since on a mesh a loop over batch chunks would reshape the sharded batch axis (which is
  also why the simulated meshes of `slam_jax.bench.memory` compile the unrolled taps)."""
  return _single_cpu_device()


def _in_chunks(fn: Callable[..., jnp.ndarray], x: jnp.ndarray, kernel: jnp.ndarray,
               valid: jnp.ndarray) -> jnp.ndarray:
  """fn(x_chunk, kernel, valid_chunk) over `_CHUNKS` slices of the batch as a loop, on XLA:CPU.

  The loop is for XLA:CPU's fusion: a tap loop reads its input at K offsets, and an input that is
  an elementwise expression (GLU's sigmoid forward, a norm's backward) would otherwise be fused
  into it and recomputed K times per element (with a masked group norm after the conv, a layer's
  backward took ~15x longer). A loop's operands are materialised once.
  """
  b = x.shape[0]
  if not _loop_taps() or b == 1:
    return fn(x, kernel, valid)
  chunks = _CHUNKS if b % _CHUNKS == 0 else b
  xs = x.reshape((chunks, b // chunks) + x.shape[1:])
  vs = jnp.moveaxis(valid.reshape((valid.shape[0], chunks, b // chunks) + valid.shape[2:]), 1, 0)
  out = jax.lax.map(lambda args: fn(args[0], kernel, args[1]), (xs, vs))
  return out.reshape(x.shape)


def _tap_products(x: jnp.ndarray, g: jnp.ndarray, valid: jnp.ndarray, left: int) -> jnp.ndarray:
  """fp32 [K, C]: sum over (batch, time) of tap_k(x) * g.

  On XLA:CPU one tap per loop iteration: the loop keeps g's producer from being fused into, and
  recomputed by, each of the K reductions.
  """
  x_pad = _pad_time(x, valid.shape[0], left)
  gf = g.astype(jnp.float32)

  def tap(k):
    return jnp.sum(_tap(x_pad, valid, k).astype(jnp.float32) * gf, axis=(0, 1))

  if _loop_taps():
    return jax.lax.map(tap, jnp.arange(valid.shape[0]))
  return jnp.stack([tap(k) for k in range(valid.shape[0])])


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _depthwise(x: jnp.ndarray, kernel: jnp.ndarray, valid: jnp.ndarray, valid_rev: jnp.ndarray,
               left: int) -> jnp.ndarray:
  del valid_rev  # The backward pass's mask (see `_depthwise_bwd`).
  return _in_chunks(functools.partial(_shift_add, left=left), x, kernel, valid)


def _depthwise_fwd(x, kernel, valid, valid_rev, left):
  return _depthwise(x, kernel, valid, valid_rev, left), (x, kernel, valid, valid_rev)


def _depthwise_bwd(left, residuals, g):
  """Hand-written VJP: autodiff of the shifted multiply-adds materialises every masked tap
  and pads each tap's cotangent back (~10x the forward's time on XLA:CPU). The input's gradient
  is a tap loop over the cotangent; the kernel's is one (batch, time) reduction per tap."""
  x, kernel, valid, valid_rev = residuals
  # dx[s] = sum_k valid[k][t] g[t] w[k] with t = s - k + left; with j = K-1-k, t = s + j - left'
  # (left' = K-1-left) and, a neighbour relation being symmetric, the mask is valid_rev[j][s]
  # (`neighbour_valid` with left'): dx is the conv of g with the kernel reversed and mirrored
  # padding (the same padding for a centred kernel).
  k = kernel.shape[0]
  dx = _in_chunks(functools.partial(_shift_add, left=k - 1 - left), g, kernel[::-1],
                  valid_rev).astype(x.dtype)
  dkernel = _tap_products(x, g, valid, left)
  return dx, dkernel.astype(kernel.dtype), None, None


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv1d(x: jnp.ndarray, kernel: jnp.ndarray, segment_ids: jnp.ndarray,
                     bias: Optional[jnp.ndarray] = None, causal: bool = False) -> jnp.ndarray:
  """Depthwise 1-D convolution (centred, or causal) as K shifted multiply-adds, segment-aware.

  Same numerics as `lax.conv_general_dilated(..., padding='SAME', feature_group_count=C)` (a
  cross-correlation) when every position is in one segment, but neighbours in another segment or in
  padding are read as zero. Written without a grouped convolution because XLA:CPU's grouped conv is
  pathologically slow (see DESIGN.md, "Measured pitfall"), and with a hand-written VJP (the
  reversed-kernel conv for the input, per-tap products summed for the kernel) because autodiff of
  the multiply-adds is itself ~10x slower than the forward on XLA:CPU.

  Args:
    x: [batch, time, channels].
    kernel: [K, channels] (K odd when centred).
    segment_ids: int [batch, time]; 0 = padding.
    bias: optional [channels].
    causal: output t reads frames t-K+1 .. t (padding ((K-1, 0)), as w2v-BERT 2.0) instead of
      t-K//2 .. t+K//2.

  Returns:
    [batch, time, channels] in x's dtype (accumulated in fp32).
  """
  k = kernel.shape[0]
  left = k - 1 if causal else k // 2
  valid = neighbour_valid(segment_ids, k, left)
  valid_rev = valid if k - 1 - left == left else neighbour_valid(segment_ids, k, k - 1 - left)
  acc = _depthwise(x, kernel, valid, valid_rev, left)
  if bias is not None:
    acc = acc + bias.astype(jnp.float32)[None, None, :]
  return ad_checkpoint.checkpoint_name(acc.astype(x.dtype), DEPTHWISE_OUTPUT)


def masked_group_norm(x: jnp.ndarray, mask: jnp.ndarray, num_groups: int,
                      epsilon: float = 1e-6) -> jnp.ndarray:
  """Group normalisation with statistics over valid positions only (no scale/bias).

  Statistics are per example row and channel group, pooled over the row's valid positions (a
  packed row pools its segments). Padding never enters the statistics, so valid outputs do not
  depend on padding; there is no mutable state (unlike batch norm).

  Args:
    x: [batch, time, channels], channels % num_groups == 0.
    mask: bool/int [batch, time]; nonzero = valid.
    num_groups: number of channel groups.
    epsilon: variance floor.

  Returns:
    normalised x, fp32 [batch, time, channels].
  """
  b, t, c = x.shape
  xf = x.astype(jnp.float32).reshape(b, t, num_groups, c // num_groups)
  m = mask.astype(jnp.float32).reshape(b, t, 1, 1)
  count = jnp.maximum(jnp.sum(m, axis=(1, 3), keepdims=True) * (c // num_groups), 1.0)
  mean = jnp.sum(xf * m, axis=(1, 3), keepdims=True) / count
  var = jnp.sum(jnp.square(xf - mean) * m, axis=(1, 3), keepdims=True) / count
  y = (xf - mean) * jax.lax.rsqrt(var + epsilon)
  return y.reshape(b, t, c)
