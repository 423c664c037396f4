"""Parameter counts of the encoder per component, from shapes only (jax.eval_shape: no allocation).

Usage:
  python -m slam_jax.models.summary --gin_file=gin/models/600m.gin
  python -m slam_jax.models.summary --preset=2b
  python -m slam_jax.models.summary --gin_file=gin/models/base.gin \
      --gin_bindings="make_encoder_config.vocab_size = 8000"
"""

import argparse
import sys
from typing import Dict, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from slam_jax.models import encoder as encoder_lib

# Top-level param collections -> the component they are reported under.
COMPONENTS = {
    "feature_encoder": "feature encoder",
    "mask_embedding": "speech stack",
    "input_projection": "speech stack",
    "speech_stack": "speech stack",
    "text_embedder": "text embedder",
    "modality_embedding": "shared stack",
    "shared_stack": "shared stack",
}
COMPONENT_ORDER = ("feature encoder", "speech stack", "shared stack", "text embedder")


def param_shapes(config: encoder_lib.EncoderConfig):
  """The encoder's param tree as ShapeDtypeStructs (via jax.eval_shape; nothing is allocated)."""
  model = encoder_lib.SlamEncoder(config)
  batch, frames, length = 1, 8, 4
  args = (jnp.zeros((batch, frames, config.num_mel_bins), jnp.float32),
          jnp.ones((batch, frames), jnp.int32), jnp.ones((batch, length), jnp.int32),
          jnp.ones((batch, length), jnp.int32),
          jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32)[None], (batch, length)))
  variables = jax.eval_shape(lambda key: model.init(key, *args), jax.random.PRNGKey(0))
  return variables["params"]


def _count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def count_params(config: encoder_lib.EncoderConfig) -> Dict[str, int]:
  """{top-level param name: count} plus per-component sums ('component/<name>') and 'total'."""
  params = param_shapes(config)
  counts = {name: _count(sub) for name, sub in params.items()}
  unknown = set(counts) - set(COMPONENTS)
  if unknown:  # A new top-level param must be assigned to a component here.
    raise ValueError(f"summary.COMPONENTS does not know params {sorted(unknown)}")
  out = dict(counts)
  for comp in COMPONENT_ORDER:
    out[f"component/{comp}"] = sum(c for n, c in counts.items() if COMPONENTS[n] == comp)
  out["total"] = sum(counts.values())
  return out


def format_summary(config: encoder_lib.EncoderConfig, counts: Dict[str, int]) -> str:
  """A readable table of the counts."""
  total = counts["total"]
  per_layer = (counts["speech_stack"] / config.num_speech_layers)
  lines = [
      f"SLAM encoder: dim={config.model_dim} heads={config.num_heads} ffn={config.ffn_dim} "
      f"kernel={config.conv_kernel_size} layers={config.num_speech_layers}+"
      f"{config.num_shared_layers} vocab={config.vocab_size}",
      f"{'component':<22}{'params':>16}{'share':>9}",
  ]
  for comp in COMPONENT_ORDER:
    c = counts[f"component/{comp}"]
    lines.append(f"{comp:<22}{c:>16,}{100.0 * c / total:>8.1f}%")
    members = [name for name, group in COMPONENTS.items() if group == comp]
    if len(members) > 1:
      lines.extend(f"  {name:<20}{counts.get(name, 0):>16,}" for name in members)
  lines.append(f"{'total':<22}{total:>16,}  ({total / 1e6:.1f}M)")
  lines.append(f"per Conformer layer: {per_layer:,.0f}")
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin file(s) binding make_encoder_config (e.g. gin/models/600m.gin)")
  parser.add_argument("--gin_bindings", action="append", default=[],
                      help="extra gin bindings, e.g. 'make_encoder_config.vocab_size = 8000'")
  parser.add_argument("--preset", default=None,
                      help=f"a preset instead of gin: {sorted(encoder_lib.PRESETS)}")
  args = parser.parse_args(argv)
  if args.preset and (args.gin_file or args.gin_bindings):
    parser.error("use either --preset or --gin_file/--gin_bindings")
  if args.preset:
    config = encoder_lib.get_preset(args.preset)
  else:
    if not args.gin_file:
      parser.error("pass --gin_file=gin/models/<size>.gin (or --preset=<name>)")
    gin.parse_config_files_and_bindings(args.gin_file, args.gin_bindings)
    config = encoder_lib.make_encoder_config()
  print(format_summary(config, count_params(config)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
