"""Device mesh, logical-axis rules and sharding helpers (jax.jit + NamedSharding).

The model annotates every parameter with logical axis names (`batch`, `length`, `embed`, `mlp`,
`heads`, `kv`, `vocab`, `conv`, `codebook`, `layers`); this module is the one place that maps them
onto the two mesh axes:

  data   data parallelism (the batch), and optionally FSDP: parameters sharded along `embed`
  model  tensor parallelism (`mlp`, `heads`, `vocab`)

The same code runs on one CPU, a GPU host or a TPU pod: only the mesh shape changes.
"""

import dataclasses
import logging
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import flax
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
from flax import traverse_util
from flax.linen import partitioning as flax_partitioning
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from orbax.checkpoint import multihost as ocp_multihost

PyTree = Any
LogicalRules = Sequence[Tuple[str, Optional[str]]]

DATA_AXIS = "data"
MODEL_AXIS = "model"


def logical_axis_rules(fsdp: bool = False) -> LogicalRules:
  """The rules table: logical axis name -> mesh axis (None = replicated).

  Args:
    fsdp: shard parameters' `embed` dimension along `data` (ZeRO-3 style); activations' `embed`
      stays replicated because `batch` already uses the `data` axis.
  """
  return (
      ("batch", DATA_AXIS),
      ("length", None),
      ("embed", DATA_AXIS if fsdp else None),
      ("mlp", MODEL_AXIS),
      ("heads", MODEL_AXIS),
      ("kv", None),
      ("vocab", MODEL_AXIS),
      ("conv", None),
      ("codebook", None),
      ("layers", None),
  )


# Activations use these rules: `embed` is never sharded on activations (their batch dim is).
def activation_rules(rules: LogicalRules) -> LogicalRules:
  return tuple((name, None if name == "embed" else axis) for name, axis in rules)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Shape of the device mesh.

  Attributes:
    data: devices along the data axis; -1 = all devices not used by `model`.
    model: devices along the tensor-parallel axis.
    fsdp: also shard parameters and optimizer state along `data`.
  """

  data: int = -1
  model: int = 1
  fsdp: bool = False

  def resolve(self, num_devices: int) -> Tuple[int, int]:
    if self.model < 1 or num_devices % self.model:
      raise ValueError(
          f"MeshConfig.model={self.model} must divide the number of devices ({num_devices}).")
    data = num_devices // self.model if self.data == -1 else self.data
    if data * self.model != num_devices:
      raise ValueError(
          f"MeshConfig data={self.data} x model={self.model} != {num_devices} devices; "
          "set data=-1 to use all remaining devices.")
    return data, self.model


def make_mesh(config: MeshConfig = MeshConfig(), devices: Optional[Sequence[Any]] = None) -> Mesh:
  """Builds a (data, model) mesh over `devices` (default: all global devices)."""
  devices = list(jax.devices() if devices is None else devices)
  data, model = config.resolve(len(devices))
  device_array = np.asarray(devices).reshape(data, model)
  return Mesh(device_array, (DATA_AXIS, MODEL_AXIS),
              axis_types=(jax.sharding.AxisType.Auto,) * 2)


def maybe_initialize_distributed(mode: Optional[str] = None) -> None:
  """Calls `jax.distributed.initialize` when the job spans several processes.

  Args:
    mode: None or "" = single process (nothing to do); "auto" = let JAX discover the cluster
      (TPU pods, SLURM, Open MPI, Kubernetes: every process runs the same command);
      "COORDINATOR:PORT,NUM_PROCESSES,PROCESS_ID" = explicit, e.g. "10.0.0.2:1234,4,0".
  """
  if not mode:
    return
  if mode == "auto":
    logging.info("jax.distributed.initialize() with cluster auto-detection")
    jax.distributed.initialize()
    return
  try:
    address, num, pid = mode.split(",")
    num_processes, process_id = int(num), int(pid)
  except ValueError as e:
    raise ValueError(f"SLAM_DISTRIBUTED={mode!r}: expected 'auto' or "
                     "'COORDINATOR:PORT,NUM_PROCESSES,PROCESS_ID'.") from e
  jax.distributed.initialize(coordinator_address=address, num_processes=num_processes,
                             process_id=process_id)


def sync_processes(name: str, timeout_s: int = 1800) -> None:
  """Waits until every process reaches `name` (no-op with one process).

  A barrier of the distributed coordination service, not a collective: processes reach the
  first cross-process collective of a run at different times (compile, restore, input
  start-up), and CPU collectives (gloo) give their context set-up only 30 s, which a loaded
  machine exceeds. Waiting here first lets them start the collectives together.
  """
  if jax.process_count() > 1:
    ocp_multihost.sync_global_processes(name, timeout=timeout_s)


def logical_to_sharding(logical_specs: PyTree, mesh: Mesh, rules: LogicalRules) -> PyTree:
  """Maps a tree of logical PartitionSpecs to NamedShardings on `mesh`."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def tree_shardings(boxed_abstract_tree: PyTree, mesh: Mesh, rules: LogicalRules) -> PyTree:
  """Shardings for a tree that may hold `nn.LogicallyPartitioned` boxes (e.g. eval_shape(init)).

  Leaves without annotations (step counters, optimizer scalars) are replicated.
  """
  specs = nn.get_partition_spec(boxed_abstract_tree)
  return logical_to_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Every batch feature is sharded along its leading (batch) dimension."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def host_batch_to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Turns this host's slice of the global batch into global `jax.Array`s sharded on `data`.

  Each process passes its own `per_host_batch` rows; the global batch is their concatenation in
  process order (what `seqio.ShardInfo(index=process_index, num_shards=process_count)` yields).
  """
  sharding = batch_sharding(mesh)
  out = {}
  for name, value in batch.items():
    value = np.asarray(value)
    global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
    out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


def check_batch_divisible(global_batch_size: int, mesh: Mesh) -> None:
  data = mesh.shape[DATA_AXIS]
  if global_batch_size % data:
    raise ValueError(
        f"BATCH_SIZE={global_batch_size} is not divisible by the mesh's data axis ({data}); "
        "choose a multiple or change MeshConfig.data.")
  if global_batch_size % jax.process_count():
    raise ValueError(f"BATCH_SIZE={global_batch_size} is not divisible by the "
                     f"{jax.process_count()} processes.")


def unbox(tree: PyTree) -> PyTree:
  """Strips flax partitioning boxes, leaving plain arrays."""
  return nn.meta.unbox(tree)


def split_axes(boxed_params) -> Dict[str, Any]:
  """{'params': plain arrays, 'params_axes': AxisMetadata per param, keys '<name>_axes'} of a
  tree of `nn.LogicallyPartitioned` boxes (t5x's layout; unboxed leaves get all-None axes)."""
  is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
  flat = traverse_util.flatten_dict(
      flax.core.unfreeze(boxed_params), is_leaf=lambda _, x: is_box(x))
  params, axes = {}, {}
  for path, leaf in flat.items():
    names = tuple(leaf.names) if is_box(leaf) else (None,) * jnp.ndim(leaf)
    params[path] = leaf.value if is_box(leaf) else leaf
    axes[path[:-1] + (path[-1] + "_axes",)] = flax_partitioning.AxisMetadata(names=names)
  return {"params": traverse_util.unflatten_dict(params),
          "params_axes": traverse_util.unflatten_dict(axes)}


def boxed_params(variables: Mapping[str, Any]):
  """variables['params'] with each leaf boxed in `nn.LogicallyPartitioned` from
  variables['params_axes'] (inverse of `split_axes`); already-boxed params pass through."""
  if "params_axes" not in variables:
    return variables["params"]
  flat_axes = traverse_util.flatten_dict(flax.core.unfreeze(variables["params_axes"]),
                                         is_leaf=lambda _, x: isinstance(
                                             x, flax_partitioning.AxisMetadata))
  flat = traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
  boxed = {}
  for path, value in flat.items():
    meta = flat_axes[path[:-1] + (path[-1] + "_axes",)]
    boxed[path] = nn.LogicallyPartitioned(value, tuple(meta.names))
  return traverse_util.unflatten_dict(boxed)


@gin.configurable
def t5x_logical_axis_rules(fsdp: bool = False) -> Tuple[Tuple[str, Optional[str]], ...]:
  """`logical_axis_rules(fsdp)` for t5x's PjitPartitioner (mesh axes 'data' and 'model', as ours)."""
  return tuple(logical_axis_rules(fsdp))
