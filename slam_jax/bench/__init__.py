"""Benchmarks: `python -m slam_jax.bench --gin_file=gin/bench/<name>.gin [--peer] [--mode=...]`.

harness.py (timed steps, MFU, report), model_flops.py (analytic FLOP counts), models.py (what is
benchmarked and its generated batches), memory.py (compile-only memory at scale), peer.py (the
PyTorch peer). gin names its settings `slam_jax.bench.BenchConfig`.
"""
from slam_jax.bench.harness import BenchConfig  # noqa: F401  (registers it with gin)
