"""Memory mode (slam_jax/bench/memory.py): mesh layouts and the table."""

import pytest

from slam_jax.bench import memory as bench_memory


def test_memory_mesh_layouts_and_table():
  assert bench_memory._mesh_config("dp", 8, 4).fsdp is False  # pylint: disable=protected-access
  tp = bench_memory._mesh_config("fsdp_tp", 64, 4)  # pylint: disable=protected-access
  assert (tp.data, tp.model, tp.fsdp) == (16, 4, True)
  with pytest.raises(ValueError, match="layout"):
    bench_memory._mesh_config("zero", 8, 4)  # pylint: disable=protected-access
  row = {"preset": "2b", "layout": "fsdp", "devices": 8, "mesh": {"data": 8, "model": 1},
         "global_batch": 8, "num_params": 2 ** 28, "compile_seconds": 1.0,
         "memory_per_device": {"argument_size_in_bytes": 2 ** 30, "temp_size_in_bytes": 0,
                               "total_bytes": 2 ** 30}}
  table = bench_memory.format_table({"results": [row, {"preset": "600m", "layout": "dp",
                                                       "devices": 64, "error": "boom"}]})
  assert "1.00" in table and "ERROR boom" in table
