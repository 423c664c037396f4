"""Backwards-compatible alias: `python -m slam_jax.data.corpus` = `python -m slam_jax.data.demo`.

The demo-corpus generator lives in `slam_jax.data.demo` (corpus.py, grammar.py, espeak.py).
"""
from slam_jax.data.demo.corpus import *  # noqa: F401,F403  pylint: disable=wildcard-import
from slam_jax.data.demo.corpus import main

if __name__ == "__main__":
  main()
