"""Tests for slam_jax/host_memory.py: big blocks come from a heap that is never trimmed."""

import os
import subprocess
import sys

import pytest

from slam_jax.perf import host_memory

# Allocates, touches and frees a 256 MiB array; prints from glibc's mallinfo2 the change in blocks
# served by their own mmap (hblks) while held and after the free, and the heap's size after it.
_PROBE = """
import ctypes, sys
from slam_jax.perf import host_memory
host_memory.tune()
import numpy as np

class MallInfo2(ctypes.Structure):
  _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
              "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = host_memory._glibc()
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2()
a = np.ones(64 << 20, np.float32)
held = libc.mallinfo2()
del a
freed = libc.mallinfo2()
print(held.hblks - before.hblks, freed.hblks - before.hblks, freed.arena)
"""

_BLOCK = 256 << 20


def _mallinfo(env_value: str):
  env = dict(os.environ, **{host_memory.ENV_VAR: env_value})
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, check=True, capture_output=True,
                       text=True, timeout=120)
  return [int(v) for v in out.stdout.split()]


def _has_mallinfo2() -> bool:
  libc = host_memory._glibc()
  return libc is not None and hasattr(libc, "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33")
def test_tuned_malloc_keeps_big_blocks_on_the_heap():
  held_mmaps, _, freed_heap = _mallinfo("1")
  # Tuned: the 256 MiB block is carved from the heap, and the heap keeps it after the free, so the
  # next step's temporaries reuse pages that are already mapped.
  assert held_mmaps == 0
  assert freed_heap >= _BLOCK
  # Default glibc serves it with its own mmap and unmaps it on free.
  held_mmaps, freed_mmaps, freed_heap = _mallinfo("0")
  assert held_mmaps == 1
  assert freed_mmaps == 0 and freed_heap < _BLOCK


def test_disabled_by_argument_or_env(monkeypatch):
  assert host_memory.tune(enable=False) is False
  monkeypatch.setenv(host_memory.ENV_VAR, "off")
  assert host_memory.tune() is False
