"""`python -m slam_jax.bench ...`: see slam_jax/bench/harness.py (--mode=infer: bench/infer.py)."""
import sys

if "--mode=infer" in sys.argv[1:]:
  from slam_jax.bench import infer  # pylint: disable=g-import-not-at-top
  infer.main(sys.argv[1:])
else:
  from slam_jax.bench import harness  # pylint: disable=g-import-not-at-top
  harness.main(sys.argv[1:])
