"""Keeps glibc's malloc from handing XLA:CPU's large step buffers back to the kernel.

XLA:CPU allocates a step's temporaries (GiBs at benchmark size) with malloc on every call. By
default glibc serves such blocks with a fresh mmap (or trims them from the heap top when freed),
so each step page-faults its whole working set back in: ~600k minor faults and ~0.9 CPU-s per
step of `gin/bench/encoder_cpu.gin`, and zeroed cold pages in every elementwise pass. With one
arena, no mmap for large blocks and no trimming, the freed blocks are reused by the next step and
the faults drop to zero (README, Benchmarks: ~8% off the CPU encoder step).

The cost is that the process keeps its peak heap for its lifetime, which is what a training or
benchmark process does anyway. Accelerator backends allocate device memory elsewhere, so this
only changes host-side allocations there. One arena serialises large host allocations of all
threads (small ones go through glibc's per-thread caches): on the 2-core machine the log-mel
front end still ran at >200x what training consumed; on a host with many input threads, measure
with and without it.

Call `tune()` first thing in a process's main, before JAX creates its thread pool: arenas that
threads already own are not merged. Set SLAM_HOST_MALLOC=0 to leave malloc alone.
"""

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Optional

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
M_ARENA_MAX = -8

ENV_VAR = "SLAM_HOST_MALLOC"
TOP_PAD_BYTES = 64 << 20

_tuned = False


def _glibc() -> Optional[ctypes.CDLL]:
  """glibc, or None on other platforms or C libraries (musl, macOS)."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    libc.gnu_get_libc_version()
  except (OSError, AttributeError):
    return None
  return libc


def tune(enable: Optional[bool] = None) -> bool:
  """Sets one malloc arena, no mmap for big blocks and no heap trimming. Idempotent.

  Args:
    enable: None reads SLAM_HOST_MALLOC (default on; '0'/'false'/'no'/'off' disable).

  Returns:
    Whether the settings are in effect (False when disabled, or not glibc).
  """
  global _tuned
  if enable is None:
    enable = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")
  if not enable:
    return False
  if _tuned:
    return True
  libc = _glibc()
  if libc is None:
    logging.info("host_memory: not glibc; malloc left as is")
    return False
  # -1 as M_TRIM_THRESHOLD is glibc's documented "never trim".
  settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1),
              (M_TOP_PAD, TOP_PAD_BYTES))
  ok = all(libc.mallopt(param, value) == 1 for param, value in settings)
  if not ok:
    logging.warning("host_memory: mallopt refused a setting; malloc partly tuned")
  _tuned = ok
  return ok


def tuned() -> bool:
  """Whether `tune()` has taken effect in this process."""
  return _tuned
