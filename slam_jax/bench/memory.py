r"""Memory at scale, on paper: compile (no run) the SLAM train step for simulated CPU meshes.

`python -m slam_jax.bench --mode=memory` runs `run(config)`, which starts one subprocess per device
count N with `XLA_FLAGS=--xla_force_host_platform_device_count=N` (the flag must be set before jax
is imported, hence the subprocess). Each subprocess builds, for every preset and mesh layout, the
`PartitionedTrainer` of real training (logical-axis rules of slam_jax.partitioning, donated state),
AOT-compiles its step for the global batch and reports XLA's per-device memory analysis:

  dp       MeshConfig(data=N, model=1, fsdp=False): params + AdamW state replicated
  fsdp     MeshConfig(data=N, model=1, fsdp=True): params + state sharded over 'data' (embed axis)
  fsdp_tp  MeshConfig(data=N/M, model=M, fsdp=True): FSDP plus tensor parallelism over M devices

Nothing is executed, so it runs on a laptop; compile times on 2 cores are reported.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List


def _mesh_config(layout: str, devices: int, model_parallel: int):
  from slam_jax import partitioning as partitioning_lib  # pylint: disable=g-import-not-at-top
  if layout == "dp":
    return partitioning_lib.MeshConfig(data=devices, model=1, fsdp=False)
  if layout == "fsdp":
    return partitioning_lib.MeshConfig(data=devices, model=1, fsdp=True)
  if layout == "fsdp_tp":
    mp = min(model_parallel, devices)
    return partitioning_lib.MeshConfig(data=devices // mp, model=mp, fsdp=True)
  raise ValueError(f"memory mesh layout {layout!r}: use 'dp', 'fsdp' or 'fsdp_tp'")


def compile_one(preset: str, layout: str, devices: int, model_parallel: int,
                rows_per_data_shard: int, frames: int, text_length: int,
                remat: str) -> Dict[str, Any]:
  """Compiles one preset's train step on the current (simulated) devices; XLA memory per device."""
  import jax  # pylint: disable=g-import-not-at-top
  from slam_jax.perf import flops as flops_lib  # pylint: disable=g-import-not-at-top
  from slam_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  from slam_jax import partitioning as partitioning_lib  # pylint: disable=g-import-not-at-top
  from slam_jax import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  from slam_jax.models import encoder as encoder_lib  # pylint: disable=g-import-not-at-top

  if jax.device_count() != devices:
    raise RuntimeError(f"expected {devices} devices, jax sees {jax.device_count()}: set XLA_FLAGS="
                       f"--xla_force_host_platform_device_count={devices} before importing jax")
  mesh_config = _mesh_config(layout, devices, model_parallel)
  mesh = partitioning_lib.make_mesh(mesh_config)
  data = mesh.shape[partitioning_lib.DATA_AXIS]
  batch = data * rows_per_data_shard
  model = model_lib.SlamModel(encoder_lib.get_preset(preset, remat_policy=remat))
  shapes, dtypes = model.input_shapes_and_types(batch, {"speech": frames, "text": text_length})
  tx = trainer_lib.make_optimizer(trainer_lib.OptimizerConfig(), total_steps=1000)
  rules = partitioning_lib.logical_axis_rules(fsdp=mesh_config.fsdp)
  trainer = trainer_lib.PartitionedTrainer(model, tx, mesh, rules, 0, shapes, dtypes)
  start = time.perf_counter()
  compiled = trainer.compile(batch)
  seconds = time.perf_counter() - start
  memory = flops_lib.compiled_memory_bytes(compiled) or {}
  params = trainer.num_params()
  return {
      "preset": preset, "layout": layout, "devices": devices,
      "mesh": {"data": int(data), "model": int(mesh.shape[partitioning_lib.MODEL_AXIS])},
      "fsdp": mesh_config.fsdp, "global_batch": batch, "rows_per_data_shard": rows_per_data_shard,
      "frames": frames, "text_length": text_length, "remat": remat,
      "num_params": params, "compile_seconds": round(seconds, 1),
      "memory_per_device": memory,
      # params fp32 + AdamW mu, nu: 12 bytes a parameter before sharding.
      "state_bytes_unsharded": 12 * params,
  }


def _child(args: Dict[str, Any]) -> None:
  results = []
  for preset in args["presets"]:
    for layout in args["meshes"]:
      try:
        result = compile_one(preset, layout, args["devices"], args["model_parallel"],
                             args["rows_per_data_shard"], args["frames"], args["text_length"],
                             args["remat"])
      except Exception as e:  # pylint: disable=broad-except
        result = {"preset": preset, "layout": layout, "devices": args["devices"],
                  "error": f"{type(e).__name__}: {e}"[:2000]}
      print("RESULT " + json.dumps(result), flush=True)
      results.append(result)


def run(config) -> Dict[str, Any]:
  """Memory mode of slam_jax.bench: one subprocess per device count; collects the results."""
  rows: List[Dict[str, Any]] = []
  started = time.perf_counter()
  for devices in config.memory_devices:
    args = {"presets": list(config.memory_presets), "meshes": list(config.memory_meshes),
            "devices": int(devices), "model_parallel": config.memory_model_parallel,
            "rows_per_data_shard": config.memory_rows_per_data_shard,
            "frames": config.memory_frames, "text_length": config.memory_text_length,
            "remat": config.memory_remat}
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={devices}").strip()
    cmd = [sys.executable, "-m", "slam_jax.bench.memory", json.dumps(args)]
    print(f"[slam_jax.bench] memory: compiling {args['presets']} x {args['meshes']} on "
          f"{devices} simulated devices ...", flush=True)
    try:
      out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                           timeout=config.memory_timeout_s)
      stdout, stderr = out.stdout, out.stderr
    except subprocess.TimeoutExpired as e:
      stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
      stderr = f"timed out after {config.memory_timeout_s} s"
    got = [json.loads(line[len("RESULT "):]) for line in stdout.splitlines()
           if line.startswith("RESULT ")]
    if not got:
      got = [{"devices": devices, "error": stderr[-2000:]}]
    rows += got
  return {"mode": "memory", "config": dataclasses.asdict(config), "results": rows,
          "wall_seconds": round(time.perf_counter() - started, 1),
          "load_average_1m": os.getloadavg()[0]}


def format_table(report: Dict[str, Any]) -> str:
  """Per-device memory table, one line per (preset, mesh layout, devices)."""
  gib = 2.0 ** 30
  lines = ["[slam_jax.bench] memory mode: XLA memory analysis per device of the compiled train "
           "step (no run)",
           f"{'preset':>6} {'layout':>8} {'devices':>7} {'mesh d x m':>10} {'batch':>5} "
           f"{'params GiB':>10} {'args GiB':>8} {'temp GiB':>8} {'total GiB':>9} {'compile s':>9}"]
  for r in sorted(report["results"], key=lambda r: (r.get("preset", ""), r.get("layout", ""),
                                                     r.get("devices", 0))):
    if "error" in r:
      lines.append(f"{r.get('preset', '?'):>6} {r.get('layout', '?'):>8} {r.get('devices'):>7} "
                   f"ERROR {r['error'][:150]}")
      continue
    m = r["memory_per_device"]
    lines.append(
        f"{r['preset']:>6} {r['layout']:>8} {r['devices']:>7} "
        f"{r['mesh']['data']:>4} x {r['mesh']['model']:<3} {r['global_batch']:>5} "
        f"{4 * r['num_params'] / gib:>10.2f} {m.get('argument_size_in_bytes', 0) / gib:>8.2f} "
        f"{m.get('temp_size_in_bytes', 0) / gib:>8.2f} {m.get('total_bytes', 0) / gib:>9.2f} "
        f"{r['compile_seconds']:>9.1f}")
  return "\n".join(lines)


if __name__ == "__main__":
  _child(json.loads(sys.argv[1]))
