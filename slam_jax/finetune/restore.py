"""Partial restore: the encoder's parameters out of a pre-training checkpoint.

    params = restore_encoder_params(pretrained, abstract_params["encoder"])

`pretrained` may be a MODEL_DIR (its newest step under `checkpoints/`), a `checkpoints/`
directory, or one step directory (`.../checkpoints/<step>`). Only `params/encoder/...` is read
(orbax partial restore): the optimizer state, the quantizer and the pre-training heads stay on
disk. Every encoder parameter the target expects must be in the checkpoint with the same shape;
otherwise the error names the parameter (a checkpoint of another model size fails here, before
any training).
"""

import os
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

PyTree = Any
ENCODER_KEY = "encoder"


def _is_step_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, "state"))


def _steps(directory: str):
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory)
                if d.isdigit() and _is_step_dir(os.path.join(directory, d)))


def find_checkpoint(pretrained: str, step: Optional[int] = None) -> Tuple[str, int]:
  """(step directory, step) for a MODEL_DIR, a checkpoints/ dir or a step dir.

  Raises:
    FileNotFoundError: no finished checkpoint there (the message lists what was looked for).
  """
  path = os.path.abspath(os.path.expanduser(pretrained))
  if _is_step_dir(path):
    base = os.path.basename(path.rstrip("/"))
    return path, int(base) if base.isdigit() else -1
  for directory in (os.path.join(path, "checkpoints"), path):
    steps = _steps(directory)
    if steps:
      chosen = steps[-1] if step is None else step
      if chosen not in steps:
        raise FileNotFoundError(f"PRETRAINED={pretrained!r} has checkpoints {steps}, not step "
                                f"{chosen}")
      return os.path.join(directory, str(chosen)), chosen
  raise FileNotFoundError(
      f"PRETRAINED={pretrained!r} holds no checkpoint: expected a pre-training MODEL_DIR (with "
      "checkpoints/<step>/state), its checkpoints/ directory, or a step directory. Pre-train "
      "first (python -m slam_jax.train ...) or leave PRETRAINED unset to train from scratch.")


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _flatten(tree) -> Dict[str, Any]:
  return {_path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def restore_encoder_params(pretrained: str, target_encoder_params_shapes: PyTree,
                           step: Optional[int] = None) -> PyTree:
  """The encoder's params (`params/encoder`) of a pre-training checkpoint, dropping the
  quantizer and pre-training heads; errors as `restore_params`."""
  return restore_params(pretrained, target_encoder_params_shapes, step, key=ENCODER_KEY)


def restore_params(pretrained: str, target_shapes: PyTree, step: Optional[int] = None,
                   key: Optional[str] = None) -> PyTree:
  """Restores `params[key]` (key None: all params) of a checkpoint into `target_shapes`.

  Args:
    pretrained: MODEL_DIR, checkpoints/ dir or step dir of a pre-training (or fine-tuning) run.
    target_shapes: the params (subtree) as a tree of jax.ShapeDtypeStruct (or arrays); their
      shardings, when set, are restored into.
    step: a step to restore instead of the newest.
    key: top-level params key to restore ('encoder'), None for the whole params tree.

  Returns:
    The params (same tree structure, dtypes and shardings as the target).

  Raises:
    FileNotFoundError: no checkpoint at `pretrained`.
    ValueError: a parameter is missing from the checkpoint or has another shape (named).
  """
  step_dir, _ = find_checkpoint(pretrained, step)
  state_dir = os.path.join(step_dir, "state")
  checkpointer = ocp.StandardCheckpointer()
  try:
    metadata = checkpointer.metadata(state_dir)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    params_meta = dict(tree)["params"]
    if key is not None and key not in params_meta:
      raise ValueError(f"{state_dir}: params have no '{key}' subtree (top-level keys "
                       f"{sorted(params_meta)}); is this a slam_jax checkpoint?")
    saved = _flatten(params_meta[key] if key is not None else params_meta)
    wanted = _flatten(target_shapes)
    missing = sorted(set(wanted) - set(saved))
    if missing:
      raise ValueError(f"{state_dir}: parameter(s) {missing[:5]} (of {len(missing)} "
                       "missing) are not in the checkpoint: the encoder architecture differs "
                       "from the checkpoint's (compare gin/models/*.gin)")
    mismatched = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(wanted[k].shape)}"
                  for k in sorted(wanted) if tuple(saved[k].shape) != tuple(wanted[k].shape)]
    if mismatched:
      raise ValueError(f"{state_dir}: parameter shapes differ (another model size?): "
                       + "; ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else ""))

    def abstract(x):
      sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(
          jax.local_devices()[0])
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    abstract_target = jax.tree_util.tree_map(abstract, target_shapes)
    target = {"params": {key: abstract_target} if key is not None else abstract_target}
    restorer = ocp.PyTreeCheckpointer()
    restored = restorer.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True))
    restorer.close()
  except ValueError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"Could not read {state_dir}: {type(e).__name__}: {str(e)[:300]}") from e
  finally:
    checkpointer.close()
  return restored["params"][key] if key is not None else restored["params"]
