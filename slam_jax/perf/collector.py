"""Python's cyclic garbage collector, tuned for processes that trace large JAX programs.

Tracing and lowering a train step allocate millions of short-lived objects beside the ~1M
long-lived ones that TensorFlow, JAX and seqio hold after import. With CPython's default first
threshold (700 allocations) the collector runs thousands of times per trace and each older-
generation pass walks that heap: ~5% of the test suite's CPU (tests/losses + tests/models,
113 -> 107 CPU-s) and ~1-2 s of a tiny model's 20 s init + first step. Larger thresholds keep
collection (reference cycles are still freed) at a fraction of that cost; MaxText goes further
and disables the collector during training.
"""

import gc

THRESHOLDS = (50_000, 50, 100)  # CPython's defaults: (700, 10, 10)


def tune() -> None:
  """Raises the collector's thresholds to THRESHOLDS (idempotent); call early in a main."""
  gc.set_threshold(*THRESHOLDS)
