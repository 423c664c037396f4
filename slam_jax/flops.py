"""FLOP accounting: XLA's count for a compiled step and a measured matmul peak for MFU.

MFU here is (model FLOPs per step / step time) / peak, with the peak *measured* on this device by
a large matmul in the compute dtype (`measure_matmul_peak`), or given (e.g. 989e12 for an H100's
dense bf16) when the user prefers the datasheet figure.
"""

import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np


def compiled_flops(compiled: Any) -> Optional[float]:
  """FLOPs XLA counts for one call of a compiled executable (None if the backend won't say)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def compiled_memory_bytes(compiled: Any) -> Optional[dict]:
  """Per-device memory XLA plans for a compiled executable: arguments, outputs, temporaries."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
  out = {f: int(getattr(m, f, 0) or 0) for f in fields}
  out["total_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"] +
                        out["temp_size_in_bytes"] - out["alias_size_in_bytes"])
  return out


def measure_matmul_peak(dtype=jnp.float32, size: Optional[int] = None, repeats: int = 5,
                        device: Optional[Any] = None) -> float:
  """FLOP/s of a square matmul on one device: the practical peak MFU is measured against.

  The default size is 2048 on CPU (about a second on 2 cores) and 8192 on accelerators.
  """
  device = device or jax.devices()[0]
  if size is None:
    size = 2048 if device.platform == "cpu" else 8192
  rng = np.random.default_rng(0)
  a = jax.device_put(jnp.asarray(rng.standard_normal((size, size)), dtype), device)
  b = jax.device_put(jnp.asarray(rng.standard_normal((size, size)), dtype), device)
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2.0 * size ** 3 / float(np.median(times))
