"""Encoder checkpoints: a SlamEncoder's parameters plus its EncoderConfig, in one directory.

    CKPT/encoder_config.json   the EncoderConfig fields (architecture and runtime options)
    CKPT/params/               orbax PyTree checkpoint of the encoder's params (fp32 numpy tree)
    CKPT/frontend.json         optional: the LogMelConfig fields the encoder expects its
                               features from (`slam_jax.data.features`); absent = the default
    CKPT/vocab.model           optional: the SentencePiece model of the text side

Written by `python -m slam_jax.convert from-hf` and read by `slam_jax.inference.Encoder.load`,
`python -m slam_jax.convert to-hf` and `slam_jax.train.train(init_encoder_from=CKPT)` (which grafts
the encoder into a fresh train state: the start of SLAM's TLM/STM stage from public weights).
"""

import dataclasses
import json
import os
import shutil
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from slam_jax.models import config as config_lib

PyTree = Any
CONFIG_FILE = "encoder_config.json"
PARAMS_DIR = "params"
FRONTEND_FILE = "frontend.json"
VOCAB_FILE = "vocab.model"
# EncoderConfig fields that change neither parameter shapes nor numerics at inference: a
# checkpoint may be loaded into a config that differs from its own in these only.
RUNTIME_FIELDS = ("dropout_rate", "attention_dropout_rate", "dtype", "scan_layers", "remat_policy",
                  "attention_implementation")


def save(path: str, config: config_lib.EncoderConfig, params: PyTree,
         frontend: Optional[Dict[str, Any]] = None, vocab: Optional[str] = None) -> None:
  """Writes `params` (the SlamEncoder's 'params' collection, unboxed) and `config` under `path`,
  plus the front end's LogMelConfig fields (`frontend`) and a SentencePiece model file (`vocab`)
  when given."""
  path = os.path.abspath(path)
  os.makedirs(path, exist_ok=True)
  params_dir = os.path.join(path, PARAMS_DIR)
  if os.path.exists(params_dir):
    raise FileExistsError(f"{params_dir} exists: choose a new --out directory")
  write_config(os.path.join(path, CONFIG_FILE), config)
  if frontend is not None:
    with open(os.path.join(path, FRONTEND_FILE), "w") as f:
      json.dump(dict(frontend), f, indent=2, sort_keys=True)
  if vocab is not None:
    shutil.copyfile(vocab, os.path.join(path, VOCAB_FILE))
  tree = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
  checkpointer = ocp.PyTreeCheckpointer()
  checkpointer.save(params_dir, tree)


def write_config(file: str, config: config_lib.EncoderConfig) -> None:
  """`config`'s fields as JSON (what `load_config` reads)."""
  if "://" not in file:
    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
  with open(file, "w") as f:
    json.dump(dataclasses.asdict(config), f, indent=2, sort_keys=True)


def load_config(path: str) -> config_lib.EncoderConfig:
  """The EncoderConfig stored under `path` (an encoder checkpoint or a training run's model_dir:
  `train` writes encoder_config.json there too)."""
  file = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(file):
    raise FileNotFoundError(f"{file} not found: {path} is not an encoder checkpoint (write one "
                            f"with `python -m slam_jax.convert from-hf ...`)")
  with open(file) as f:
    fields = json.load(f)
  known = {f.name for f in dataclasses.fields(config_lib.EncoderConfig)}
  unknown = set(fields) - known
  if unknown:
    raise ValueError(f"{file}: unknown EncoderConfig fields {sorted(unknown)} (written by a newer "
                     f"slam_jax?)")
  return config_lib.EncoderConfig(**fields)


def load_frontend(path: str) -> Optional[Dict[str, Any]]:
  """The LogMelConfig fields stored under `path`, or None (the default front end)."""
  file = os.path.join(path, FRONTEND_FILE)
  if not os.path.exists(file):
    return None
  with open(file) as f:
    return json.load(f)


def vocab_path(path: str) -> Optional[str]:
  """The SentencePiece model stored under `path`, or None."""
  file = os.path.join(path, VOCAB_FILE)
  return file if os.path.exists(file) else None


def load(path: str) -> Tuple[config_lib.EncoderConfig, PyTree]:
  """(EncoderConfig, params as a nested dict of numpy arrays) stored under `path`."""
  config = load_config(path)
  params = ocp.PyTreeCheckpointer().restore(os.path.abspath(os.path.join(path, PARAMS_DIR)))
  return config, jax.tree_util.tree_map(np.asarray, params)


def check_compatible(stored: config_lib.EncoderConfig, wanted: config_lib.EncoderConfig,
                     where: str) -> None:
  """Raises ValueError listing the architecture fields in which two configs differ."""
  a, b = dataclasses.asdict(stored), dataclasses.asdict(wanted)
  diff = {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}
  if diff:
    lines = ", ".join(f"{k}: checkpoint {v[0]!r} vs model {v[1]!r}" for k, v in sorted(diff.items()))
    raise ValueError(f"{where}: the encoder checkpoint's architecture differs from the model's "
                     f"({lines}); use the checkpoint's gin preset or convert again")


def relayout_layers(params: Dict[str, Any], scan_layers: bool) -> Dict[str, Any]:
  """Stacks (scan) or splits (unrolled) the per-layer params of both Conformer stacks."""
  out = dict(params)
  for stack in ("speech_stack", "shared_stack"):
    tree = params[stack]
    if scan_layers and "layers" not in tree:
      n = len(tree)
      layers = [tree[f"layer_{i}"] for i in range(n)]
      out[stack] = {"layers": jax.tree_util.tree_map(lambda *xs: np.stack(xs), *layers)}
    elif not scan_layers and "layers" in tree:
      stacked = tree["layers"]
      n = jax.tree_util.tree_leaves(stacked)[0].shape[0]
      out[stack] = {f"layer_{i}": jax.tree_util.tree_map(lambda x, i=i: x[i], stacked)
                    for i in range(n)}
  return out


def graft(model_params: PyTree, encoder_params: PyTree, where: str) -> PyTree:
  """`model_params` with its 'encoder' subtree replaced by `encoder_params` (same structure and
  shapes required; each array placed with the sharding of the one it replaces)."""
  if "encoder" not in model_params:
    raise ValueError(f"{where}: the model's params have no 'encoder' subtree "
                     f"(keys {sorted(model_params)})")
  target = model_params["encoder"]
  flat_t = dict(_flatten(target))
  flat_s = dict(_flatten(encoder_params))
  missing, extra = sorted(set(flat_t) - set(flat_s)), sorted(set(flat_s) - set(flat_t))
  bad = [f"{k}: {flat_s[k].shape} vs {flat_t[k].shape}" for k in sorted(set(flat_t) & set(flat_s))
         if tuple(flat_s[k].shape) != tuple(flat_t[k].shape)]
  if missing or extra or bad:
    raise ValueError(f"{where}: encoder checkpoint does not fit the model: missing {missing}, "
                     f"unexpected {extra}, shape mismatches {bad}")

  def place(old, new):
    sharding = getattr(old, "sharding", None)
    new = np.asarray(new, old.dtype)
    return jax.device_put(new, sharding) if sharding is not None else new

  grafted = jax.tree_util.tree_map(place, target, _unflatten_like(target, flat_s))
  return {**model_params, "encoder": grafted}


def _flatten(tree: PyTree, prefix: str = ""):
  """Yields ('a/b/c', leaf) for a nested dict."""
  for key, value in tree.items():
    name = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, dict):
      yield from _flatten(value, name)
    else:
      yield name, value


def _unflatten_like(tree: PyTree, flat: Dict[str, Any], prefix: str = "") -> PyTree:
  out = {}
  for key, value in tree.items():
    name = f"{prefix}/{key}" if prefix else str(key)
    out[key] = _unflatten_like(value, flat, name) if isinstance(value, dict) else flat[name]
  return out


def flatten(tree: PyTree) -> Dict[str, Any]:
  """{'a/b/c': leaf} of a nested dict."""
  return dict(_flatten(tree))


def unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
  """Inverse of `flatten`."""
  out: Dict[str, Any] = {}
  for name, value in flat.items():
    node = out
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out
