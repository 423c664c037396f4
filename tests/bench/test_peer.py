"""The PyTorch peer (slam_jax/bench/peer.py) runs one step when torch is installed."""

import pytest

from slam_jax.bench import model_flops as bench_flops
from slam_jax.bench import peer as bench_peer
from slam_jax import trainer as trainer_lib


@pytest.mark.slow
def test_peer_runs_when_torch_is_installed():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  dims = bench_flops.StackDims(32, 2, 64, 3, 16)
  result = bench_peer.encoder_step_times(dims, 1, 2, 8, trainer_lib.OptimizerConfig(),
                                         warmup=1, steps=1)
  assert len(result["step_times_s"]) == 1 and result["num_params"] > 0
