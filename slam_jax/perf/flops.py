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


def measure_matmul_peak_detail(dtype=jnp.float32, size: Optional[int] = None, repeats: int = 5,
                               device: Optional[Any] = None) -> dict:
  """Times a square matmul on one device in wall and in process-CPU seconds.

  Returns {"flops_per_s": wall FLOP/s (the MFU denominator), "flops_per_cpu_s": FLOPs per CPU
  second (load-robust: counts the work done on the cores actually obtained), "size"}. The default
  size is 2048 on CPU (~40 ms a matmul on this project's 2 cores; 3072 and 4096 run slower there,
  so 2048 gives the higher peak) and 8192 on accelerators.
  """
  device = device or jax.devices()[0]
  if not size:
    size = 2048 if device.platform == "cpu" else 8192
  rng = np.random.default_rng(0)
  a = jax.device_put(jnp.asarray(rng.standard_normal((size, size)), dtype), device)
  b = jax.device_put(jnp.asarray(rng.standard_normal((size, size)), dtype), device)
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, b).block_until_ready()
  walls, cpus = [], []
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    matmul(a, b).block_until_ready()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  flops = 2.0 * size ** 3
  return {"flops_per_s": flops / float(np.median(walls)),
          "flops_per_cpu_s": flops / max(float(np.median(cpus)), 1e-9), "size": size}


def measure_matmul_peak(dtype=jnp.float32, size: Optional[int] = None, repeats: int = 5,
                        device: Optional[Any] = None) -> float:
  """Wall-clock FLOP/s of a square matmul on one device: the peak MFU is measured against."""
  return measure_matmul_peak_detail(dtype, size, repeats, device)["flops_per_s"]
