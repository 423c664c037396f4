"""`python -m slam_jax.bench ...`: see slam_jax/bench/harness.py."""
import sys

from slam_jax.bench import harness

harness.main(sys.argv[1:])
