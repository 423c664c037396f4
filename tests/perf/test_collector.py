"""slam_jax/perf/collector.py: larger thresholds, cycles still freed without gc.collect()."""
import gc
import weakref

from slam_jax.perf import collector


class _Node:
  pass


def test_tune_raises_thresholds_and_cycles_are_still_collected():
  before = gc.get_threshold()
  try:
    collector.tune()
    assert gc.get_threshold() == collector.THRESHOLDS
    cycle = _Node()
    cycle.self = cycle
    ref = weakref.ref(cycle)
    del cycle
    # Enough allocations to pass the first threshold a few times: the collector runs by itself.
    junk = [[_Node()] for _ in range(4 * collector.THRESHOLDS[0])]
    del junk
    assert ref() is None
  finally:
    gc.set_threshold(*before)
