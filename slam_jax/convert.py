"""Converts the speech stack between SLAM encoder checkpoints and HF `Wav2Vec2BertModel` directories.

    python -m slam_jax.convert from-hf --hf_dir DIR --out CKPT [--num_speech_layers 8]
    python -m slam_jax.convert to-hf --checkpoint CKPT --out DIR
    python -m slam_jax.convert from-run --model_dir RUN --out CKPT   # a trained run's encoder

The encoder must use the w2v-BERT 2.0 options of EncoderConfig (gin/models/w2v_bert_2_0.gin):
HF layers 0..S-1 are our speech-only stack, layers S.. our shared stack. `from-hf` leaves the text
side ours and fresh (text_embedder) and sets modality_embedding = 0, so speech-only outputs equal
HF's. `to-hf` folds modality_embedding[0] (added to the speech stack's
output before the shared stack) into the last speech layer's final LayerNorm bias, so HF's last
hidden state equals our shared stack's speech output (HF's hidden state after layer S is then our
`speech_hidden + modality_embedding[0]`), and drops the text side, naming it.

Strict in both directions: every source tensor is used exactly once and every target tensor is
written (or declared fresh above), else `ConversionError` lists what is left over. Nothing is
downloaded: HF directories are read (config.json + model.safetensors, a sharded safetensors index,
or pytorch_model.bin with torch) and written (config.json + model.safetensors) locally.
"""

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from slam_jax import encoder_io
from slam_jax.models import config as config_lib

Array = np.ndarray
HF_PREFIXES = ("wav2vec2_bert.",)
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
HF_BIN = "pytorch_model.bin"
# Our params that `from-hf` initialises fresh (the text side), and `to-hf` does not export.
TEXT_SIDE = ("text_embedder/",)
# slam_jax.data.features.kaldi_fbank_config()'s fields that differ from LogMelConfig's defaults
# (tests/test_convert.py checks they agree).
KALDI_FBANK = dict(lower_edge_hz=20.0, upper_edge_hz=8000.0, log_floor=1.1920928955078125e-07,
                   normalization="utterance", norm_epsilon=1e-7, window="povey", preemphasis=0.97,
                   remove_dc_offset=True, mel_scale="kaldi", input_scale=32768.0, variance_ddof=1)


class ConversionError(ValueError):
  """A checkpoint does not map one-to-one onto the other format."""


# ------------------------------------------------------------------ tensor layouts

def _linear_to_ours(w: Array, shape) -> Array:
  """torch Linear / 1x1 Conv1d weight [out, in(, 1)] -> our kernel [in, out] reshaped."""
  return w.reshape(w.shape[0], -1).T.reshape(shape)


def _linear_to_hf(k: Array, shape) -> Array:
  """Our kernel [*in, *out] -> torch weight [out, in] (or [out, in, 1] for a 1x1 conv)."""
  n_out = shape[0]
  return k.reshape(-1, n_out).T.reshape(shape)


def _depthwise_to_ours(w: Array, shape) -> Array:
  """torch depthwise Conv1d weight [C, 1, K] -> our [K, C]."""
  return w[:, 0, :].T.reshape(shape)


def _depthwise_to_hf(k: Array, shape) -> Array:
  return k.T[:, None, :].reshape(shape)


def _same(x: Array, shape) -> Array:
  return x.reshape(shape)


LINEAR = (_linear_to_ours, _linear_to_hf)
DEPTHWISE = (_depthwise_to_ours, _depthwise_to_hf)
SAME = (_same, _same)
Layout = Tuple[Callable[[Array, Any], Array], Callable[[Array, Any], Array]]


def _norm(ours: str, hf: str) -> List[Tuple[str, str, Layout]]:
  return [(f"{ours}/scale", f"{hf}.weight", SAME), (f"{ours}/bias", f"{hf}.bias", SAME)]


def _ffn(ours: str, hf: str) -> List[Tuple[str, str, Layout]]:
  return [(f"{ours}/wi/kernel", f"{hf}.intermediate_dense.weight", LINEAR),
          (f"{ours}/wi/bias", f"{hf}.intermediate_dense.bias", SAME),
          (f"{ours}/wo/kernel", f"{hf}.output_dense.weight", LINEAR),
          (f"{ours}/wo/bias", f"{hf}.output_dense.bias", SAME)]


# (our path within a Conformer layer, HF key within `encoder.layers.{i}.`, layout)
LAYER_MAP: List[Tuple[str, str, Layout]] = [
    *_norm("ffn_in/norm", "ffn1_layer_norm"), *_ffn("ffn_in", "ffn1"),
    *_norm("attn_norm", "self_attn_layer_norm"),
    ("attention/query/kernel", "self_attn.linear_q.weight", LINEAR),
    ("attention/query/bias", "self_attn.linear_q.bias", SAME),
    ("attention/key/kernel", "self_attn.linear_k.weight", LINEAR),
    ("attention/key/bias", "self_attn.linear_k.bias", SAME),
    ("attention/value/kernel", "self_attn.linear_v.weight", LINEAR),
    ("attention/value/bias", "self_attn.linear_v.bias", SAME),
    ("attention/out/kernel", "self_attn.linear_out.weight", LINEAR),
    ("attention/out/bias", "self_attn.linear_out.bias", SAME),
    ("attention/distance_embedding", "self_attn.distance_embedding.weight", SAME),
    *_norm("conv/norm", "conv_module.layer_norm"),
    ("conv/pointwise_in/kernel", "conv_module.pointwise_conv1.weight", LINEAR),
    ("conv/depthwise_kernel", "conv_module.depthwise_conv.weight", DEPTHWISE),
    *_norm("conv/conv_norm", "conv_module.depthwise_layer_norm"),
    ("conv/pointwise_out/kernel", "conv_module.pointwise_conv2.weight", LINEAR),
    *_norm("ffn_out/norm", "ffn2_layer_norm"), *_ffn("ffn_out", "ffn2"),
    *_norm("final_norm", "final_layer_norm"),
]

TOP_MAP: List[Tuple[str, str, Layout]] = [
    *_norm("feature_encoder/norm", "feature_projection.layer_norm"),
    ("feature_encoder/proj/kernel", "feature_projection.projection.weight", LINEAR),
    ("feature_encoder/proj/bias", "feature_projection.projection.bias", SAME),
    ("mask_embedding", "masked_spec_embed", SAME),
]


def tensor_map(config: config_lib.EncoderConfig) -> List[Tuple[str, str, Layout]]:
  """Every (our flat path in the unrolled layout, HF key, layout) pair of the speech stack."""
  entries = list(TOP_MAP)
  for i in range(config.num_speech_layers + config.num_shared_layers):
    stack, j = (("speech_stack", i) if i < config.num_speech_layers
                else ("shared_stack", i - config.num_speech_layers))
    entries += [(f"{stack}/layer_{j}/{ours}", f"encoder.layers.{i}.{hf}", layout)
                for ours, hf, layout in LAYER_MAP]
  return entries


# ------------------------------------------------------------------ configs

W2V_BERT_OPTIONS = dict(front_end="stacked", input_projection=False, conv_causal=True,
                        conv_bias=False, conv_norm="layer", position_term="shaw")


def check_w2v_bert_config(config: config_lib.EncoderConfig) -> None:
  """Raises ConversionError unless `config` uses every w2v-BERT 2.0 option."""
  wrong = {k: getattr(config, k) for k, v in W2V_BERT_OPTIONS.items() if getattr(config, k) != v}
  if wrong:
    raise ConversionError(
        f"EncoderConfig fields {wrong} are not HF Wav2Vec2Bert's; the speech stack converts only "
        f"with {W2V_BERT_OPTIONS} (gin/models/w2v_bert_2_0.gin)")


def hf_config_dict(config: config_lib.EncoderConfig) -> Dict[str, Any]:
  """The config.json of the Wav2Vec2BertModel equivalent to `config`'s speech stack."""
  check_w2v_bert_config(config)
  return {
      "architectures": ["Wav2Vec2BertModel"], "model_type": "wav2vec2-bert",
      "hidden_size": config.model_dim, "num_attention_heads": config.num_heads,
      "intermediate_size": config.ffn_dim,
      "num_hidden_layers": config.num_speech_layers + config.num_shared_layers,
      "feature_projection_input_dim": config.num_mel_bins * config.stack_frames,
      "conv_depthwise_kernel_size": config.conv_kernel_size, "hidden_act": "swish",
      "position_embeddings_type": "relative_key",
      "left_max_position_embeddings": config.shaw_left_distance,
      "right_max_position_embeddings": config.shaw_right_distance,
      "layer_norm_eps": config.layer_norm_epsilon, "add_adapter": False,
      "use_intermediate_ffn_before_adapter": False, "mask_time_prob": 0.05,
      "hidden_dropout": 0.0, "activation_dropout": 0.0, "attention_dropout": 0.0,
      "feat_proj_dropout": 0.0, "conformer_conv_dropout": 0.0, "layerdrop": 0.0,
  }


def encoder_config_from_hf(hf: Dict[str, Any], num_speech_layers: Optional[int] = None,
                           vocab_size: int = 32000, **overrides) -> config_lib.EncoderConfig:
  """Our EncoderConfig for an HF Wav2Vec2Bert config.json dict.

  Args:
    hf: the parsed config.json.
    num_speech_layers: HF layers that form our speech-only stack (default: a third, as
      w2v-BERT 600m's 8 of 24); the rest form the shared stack.
    vocab_size: our text vocabulary (the text side is ours).
    **overrides: runtime fields (dtype, scan_layers, remat_policy, dropout_rate, ...).
  """
  def get(key, default):
    return hf.get(key, default)

  unsupported = []
  if get("model_type", "wav2vec2-bert") != "wav2vec2-bert":
    unsupported.append(f"model_type={hf['model_type']!r} (want 'wav2vec2-bert')")
  if get("position_embeddings_type", "relative_key") != "relative_key":
    unsupported.append(f"position_embeddings_type={hf['position_embeddings_type']!r} (only "
                       f"'relative_key')")
  if get("hidden_act", "swish") not in ("swish", "silu"):
    unsupported.append(f"hidden_act={hf['hidden_act']!r} (only swish)")
  if get("add_adapter", False) or get("use_intermediate_ffn_before_adapter", False):
    unsupported.append("add_adapter / use_intermediate_ffn_before_adapter (no adapter here)")
  stack = 2
  input_dim = get("feature_projection_input_dim", 160)
  if input_dim % stack:
    unsupported.append(f"feature_projection_input_dim={input_dim} (not 2 stacked frames)")
  if unsupported:
    raise ConversionError("HF config not supported: " + "; ".join(unsupported))
  layers = get("num_hidden_layers", 24)
  speech = layers // 3 if num_speech_layers is None else num_speech_layers
  if not 0 < speech < layers:
    raise ConversionError(f"num_speech_layers={speech} must be in [1, {layers - 1}] "
                          f"(HF num_hidden_layers={layers}; the rest form the shared stack)")
  fields = dict(
      model_dim=get("hidden_size", 1024), num_heads=get("num_attention_heads", 16),
      ffn_dim=get("intermediate_size", 4096),
      conv_kernel_size=get("conv_depthwise_kernel_size", 31),
      num_speech_layers=speech, num_shared_layers=layers - speech, vocab_size=vocab_size,
      num_mel_bins=input_dim // stack, stack_frames=stack,
      shaw_left_distance=get("left_max_position_embeddings", 64),
      shaw_right_distance=get("right_max_position_embeddings", 8),
      layer_norm_epsilon=float(get("layer_norm_eps", 1e-5)), **W2V_BERT_OPTIONS)
  fields.update(overrides)
  return config_lib.EncoderConfig(**fields)


# ------------------------------------------------------------------ params

def _dummy_inputs(config: config_lib.EncoderConfig):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  frames = 4 * config.stack_frames
  return (jnp.zeros((1, frames, config.num_mel_bins), jnp.float32),
          jnp.ones((1, frames), jnp.int32), jnp.zeros((1, 2), jnp.int32),
          jnp.ones((1, 2), jnp.int32), jnp.arange(2, dtype=jnp.int32)[None])


def abstract_params(config: config_lib.EncoderConfig) -> Dict[str, Any]:
  """SlamEncoder params of `config` as a tree of jax.ShapeDtypeStruct (traced, not computed)."""
  import jax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from slam_jax.models import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  module = encoder_lib.SlamEncoder(config)
  variables = jax.eval_shape(lambda rng: nn.meta.unbox(module.init(rng, *_dummy_inputs(config))),
                             jax.random.PRNGKey(0))
  return variables["params"]


def init_params(config: config_lib.EncoderConfig, seed: int = 0) -> Dict[str, Any]:
  """Freshly initialised SlamEncoder params (unboxed numpy tree) for `config`."""
  import jax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from slam_jax.models import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  module = encoder_lib.SlamEncoder(config)
  variables = jax.jit(lambda rng: nn.meta.unbox(module.init(rng, *_dummy_inputs(config))))(
      jax.random.PRNGKey(seed))
  return jax.tree_util.tree_map(np.asarray, variables["params"])


def init_text_side(config: config_lib.EncoderConfig, seed: int = 0) -> Dict[str, Any]:
  """{flat path: array} of a fresh text embedder (its own initialisers; a small init, without
  compiling the whole encoder) and a zero modality_embedding."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from slam_jax.models import text as text_lib  # pylint: disable=g-import-not-at-top
  embedder = text_lib.TextEmbedder(config.vocab_size, config.model_dim)
  ids = jnp.zeros((1, 2), jnp.int32)
  variables = nn.meta.unbox(embedder.init(jax.random.PRNGKey(seed), ids, ids, ids + 1))
  flat = {f"text_embedder/{k}": np.asarray(v)
          for k, v in encoder_io.flatten(variables["params"]).items()}
  flat["modality_embedding"] = np.zeros((2, config.model_dim), np.float32)
  return flat


def _leftovers(what: str, names: Sequence[str]) -> str:
  shown = ", ".join(sorted(names)[:20])
  more = f" (+{len(names) - 20} more)" if len(names) > 20 else ""
  return f"{len(names)} {what}: {shown}{more}"


def hf_to_params(hf_tensors: Dict[str, Array], config: config_lib.EncoderConfig,
                 seed: int = 0) -> Tuple[Dict[str, Any], List[str]]:
  """Our encoder params from an HF Wav2Vec2BertModel state dict.

  Args:
    hf_tensors: {HF key: array} (a 'wav2vec2_bert.' prefix is stripped).
    config: our EncoderConfig (w2v-BERT options; any layer layout).
    seed: of the fresh text embedder.

  Returns:
    (params in config's layer layout, names of our tensors initialised fresh: the text embedder,
     and mask_embedding when HF has no masked_spec_embed; modality_embedding is zero).

  Raises:
    ConversionError: an HF tensor is missing, unused, or of the wrong size.
  """
  check_w2v_bert_config(config)
  source = {}
  for key, value in hf_tensors.items():
    for prefix in HF_PREFIXES:
      if key.startswith(prefix):
        key = key[len(prefix):]
    if key in source:
      raise ConversionError(f"HF tensor {key} appears twice (with and without a prefix)")
    source[key] = np.asarray(value, np.float32)
  unrolled = config.replace(scan_layers=False)
  target = encoder_io.flatten(abstract_params(unrolled))
  written, missing, errors = {}, [], []
  for ours, hf_key, (to_ours, _) in tensor_map(config):
    if hf_key not in source:
      if hf_key == "masked_spec_embed":  # HF builds it only when mask_time_prob > 0.
        continue
      missing.append(hf_key)
      continue
    value = source.pop(hf_key)
    want = tuple(target[ours].shape)
    if value.size != int(np.prod(want)):
      errors.append(f"{hf_key} {value.shape} -> {ours} {want}")
      continue
    written[ours] = to_ours(value, want)
  if missing or source or errors:
    parts = []
    if missing:
      parts.append(_leftovers("HF tensors missing", missing))
    if source:
      parts.append(_leftovers("HF tensors unused", list(source)))
    if errors:
      parts.append(_leftovers("size mismatches", errors))
    raise ConversionError("from-hf: " + "; ".join(parts))
  # modality_embedding = 0: the shared stack then sees exactly HF's hidden state at speech
  # positions (row 0), and text starts without an offset (row 1, learned from there).
  fresh = init_text_side(config, seed)
  written["modality_embedding"] = fresh.pop("modality_embedding")
  if "mask_embedding" not in written:
    rng = np.random.RandomState(seed)  # SlamEncoder's initialiser: uniform [0, 1).
    fresh["mask_embedding"] = rng.uniform(size=(config.model_dim,)).astype(np.float32)
  fresh_names = sorted(set(target) - set(written))
  undeclared = sorted(set(fresh_names) - set(fresh))
  if undeclared:
    raise ConversionError("from-hf: " + _leftovers("of our tensors not written", undeclared))
  out = {**written, **{k: fresh[k] for k in fresh_names}}
  bad = [f"{k}: {out[k].shape} vs {target[k].shape}" for k in target
         if tuple(out[k].shape) != tuple(target[k].shape)]
  if bad:
    raise ConversionError("from-hf: " + _leftovers("shape mismatches", bad))
  params = encoder_io.unflatten(out)
  return encoder_io.relayout_layers(params, config.scan_layers), fresh_names


def params_to_hf(params: Dict[str, Any], config: config_lib.EncoderConfig,
                 hf_shapes: Optional[Dict[str, Tuple[int, ...]]] = None
                 ) -> Tuple[Dict[str, Array], List[str]]:
  """An HF Wav2Vec2BertModel state dict from our encoder params.

  Args:
    params: SlamEncoder params (either layer layout).
    config: their EncoderConfig (w2v-BERT options).
    hf_shapes: {key: shape} of the target HF model's state dict (from transformers); when given,
      every one of them must be written with that shape.

  Returns:
    ({HF key: float32 array}, names of our tensors not exported: the text side).

  Raises:
    ConversionError: one of our tensors unused, or an HF tensor not written / of another shape.
  """
  check_w2v_bert_config(config)
  source = dict(encoder_io.flatten(encoder_io.relayout_layers(params, scan_layers=False)))
  source = {k: np.asarray(v, np.float32) for k, v in source.items()}
  out: Dict[str, Array] = {}
  errors = []
  entries = tensor_map(config)
  shapes = hf_shapes or {}
  for ours, hf_key, (_, to_hf) in entries:
    if ours not in source:
      errors.append(f"{ours} (for {hf_key}) missing in our params")
      continue
    value = source.pop(ours)
    shape = tuple(shapes.get(hf_key, _default_hf_shape(value, ours)))
    if value.size != int(np.prod(shape)):
      errors.append(f"{ours} {value.shape} -> {hf_key} {shape}")
      continue
    out[hf_key] = to_hf(value, shape).astype(np.float32)
  # Fold modality_embedding[0] into the last speech layer's final LayerNorm bias.
  modality = source.pop("modality_embedding", None)
  if modality is None:
    errors.append("modality_embedding missing in our params")
  else:
    last = f"encoder.layers.{config.num_speech_layers - 1}.final_layer_norm.bias"
    out[last] = out[last] + modality[0]
  dropped = sorted(k for k in source if k.startswith(TEXT_SIDE))
  unused = sorted(set(source) - set(dropped))
  if unused:
    errors.append(_leftovers("of our tensors unused", unused))
  if hf_shapes is not None:
    unwritten = sorted(set(hf_shapes) - set(out))
    if unwritten:
      errors.append(_leftovers("HF tensors not written", unwritten))
    extra = sorted(set(out) - set(hf_shapes))
    if extra:
      errors.append(_leftovers("tensors the HF model does not have", extra))
  if errors:
    raise ConversionError("to-hf: " + "; ".join(errors))
  return out, dropped + ["modality_embedding[1]"]


def _default_hf_shape(value: Array, ours: str) -> Tuple[int, ...]:
  """HF's shape of one of our tensors (used when transformers is not there to say)."""
  if ours.endswith("depthwise_kernel"):
    return (value.shape[1], 1, value.shape[0])
  if ours.endswith(("pointwise_in/kernel", "pointwise_out/kernel")):
    return (value.shape[1], value.shape[0], 1)
  if ours.endswith("attention/out/kernel"):
    return (value.shape[-1], value.shape[0] * value.shape[1])
  if ours.endswith("/kernel"):
    return (int(np.prod(value.shape[1:])), value.shape[0])
  if ours.endswith(("query/bias", "key/bias", "value/bias")):
    return (value.size,)
  return value.shape


# ------------------------------------------------------------------ HF directories

def read_hf_dir(hf_dir: str) -> Tuple[Dict[str, Any], Dict[str, Array]]:
  """(config.json dict, {key: float32 array}) of a local HF model directory."""
  config_file = os.path.join(hf_dir, HF_CONFIG)
  if not os.path.exists(config_file):
    raise FileNotFoundError(f"{config_file} not found: --hf_dir must be a local HF model "
                            f"directory (config.json + model.safetensors); nothing is downloaded")
  with open(config_file) as f:
    hf_config = json.load(f)
  files: List[str] = []
  if os.path.exists(os.path.join(hf_dir, HF_WEIGHTS)):
    files = [HF_WEIGHTS]
  elif os.path.exists(os.path.join(hf_dir, HF_INDEX)):
    with open(os.path.join(hf_dir, HF_INDEX)) as f:
      files = sorted(set(json.load(f)["weight_map"].values()))
  tensors: Dict[str, Array] = {}
  if files:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    for name in files:
      tensors.update(load_file(os.path.join(hf_dir, name)))
  elif os.path.exists(os.path.join(hf_dir, HF_BIN)):
    import torch  # pylint: disable=g-import-not-at-top
    state = torch.load(os.path.join(hf_dir, HF_BIN), map_location="cpu", weights_only=True)
    tensors = {k: v.float().numpy() for k, v in state.items()}
  else:
    raise FileNotFoundError(f"{hf_dir} holds none of {HF_WEIGHTS}, {HF_INDEX}, {HF_BIN}")
  return hf_config, {k: np.asarray(v, np.float32) for k, v in tensors.items()}


def hf_state_shapes(hf_config: Dict[str, Any]) -> Optional[Dict[str, Tuple[int, ...]]]:
  """{key: shape} of transformers' Wav2Vec2BertModel for `hf_config` (built on the meta device,
  no memory), or None when torch / transformers are not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  config = transformers.Wav2Vec2BertConfig(**{k: v for k, v in hf_config.items()
                                              if k not in ("architectures", "model_type")})
  with torch.device("meta"):
    model = transformers.Wav2Vec2BertModel(config)
  return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def write_hf_dir(out_dir: str, hf_config: Dict[str, Any], tensors: Dict[str, Array]) -> None:
  """config.json + model.safetensors (loadable with Wav2Vec2BertModel.from_pretrained(out_dir))."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  weights = os.path.join(out_dir, HF_WEIGHTS)
  if os.path.exists(weights):
    raise FileExistsError(f"{weights} exists: choose a new --out directory")
  with open(os.path.join(out_dir, HF_CONFIG), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, weights,
            metadata={"format": "pt"})


# ------------------------------------------------------------------ commands

def from_hf(hf_dir: str, out: str, num_speech_layers: Optional[int] = None,
            vocab_size: int = 32000, seed: int = 0, vocab: Optional[str] = None) -> List[str]:
  """HF directory -> encoder checkpoint; returns the names of our tensors initialised fresh."""
  hf_config, tensors = read_hf_dir(hf_dir)
  config = encoder_config_from_hf(hf_config, num_speech_layers, vocab_size)
  params, fresh = hf_to_params(tensors, config, seed)
  # w2v-BERT 2.0 was trained on Kaldi-style fbank (features.kaldi_fbank_config()); recorded for
  # slam_jax.inference (the fields as plain JSON: no TensorFlow needed here).
  encoder_io.save(out, config, params, frontend=KALDI_FBANK, vocab=vocab)
  return fresh


def to_hf(checkpoint: str, out: str) -> List[str]:
  """Encoder checkpoint -> HF directory; returns the names of our tensors not exported."""
  config, params = encoder_io.load(checkpoint)
  hf_config = hf_config_dict(config)
  tensors, dropped = params_to_hf(params, config, hf_state_shapes(hf_config))
  write_hf_dir(out, hf_config, tensors)
  return dropped


def from_run(model_dir: str, out: str, step: Optional[int] = None,
             vocab: Optional[str] = None, frontend: Optional[Dict[str, Any]] = None) -> int:
  """A training run's encoder (its newest or `step` checkpoint) -> encoder checkpoint; returns
  the step. The run's architecture comes from model_dir/encoder_config.json (train writes it)."""
  from slam_jax import checkpoints as checkpoints_lib  # pylint: disable=g-import-not-at-top
  config = encoder_io.load_config(model_dir)
  ckpt = checkpoints_lib.Checkpointer(os.path.join(model_dir, "checkpoints"))
  try:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(f"{model_dir}/checkpoints holds no checkpoint")
    step, state, _ = ckpt.restore_raw(step)
  finally:
    ckpt.close()
  params = state["params"]
  if "encoder" not in params:
    raise ConversionError(f"{model_dir} step {step}: no 'encoder' in the params "
                          f"(keys {sorted(params)})")
  encoder_io.save(out, config, params["encoder"], frontend=frontend, vocab=vocab)
  return step


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m slam_jax.convert", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("from-hf", help="HF Wav2Vec2BertModel directory -> encoder checkpoint")
  p.add_argument("--hf_dir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--num_speech_layers", type=int, default=None,
                 help="HF layers forming the speech-only stack (default: a third)")
  p.add_argument("--vocab_size", type=int, default=32000, help="our text vocabulary size")
  p.add_argument("--seed", type=int, default=0, help="seed of the fresh text side")
  p.add_argument("--vocab", default=None,
                 help="SentencePiece model of the text side, stored with the checkpoint")
  p = sub.add_parser("to-hf", help="encoder checkpoint -> HF Wav2Vec2BertModel directory")
  p.add_argument("--checkpoint", required=True)
  p.add_argument("--out", required=True)
  p = sub.add_parser("from-run", help="a training run's encoder -> encoder checkpoint")
  p.add_argument("--model_dir", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--step", type=int, default=None, help="default: the newest checkpoint")
  p.add_argument("--vocab", default=None, help="the run's SentencePiece model, stored with it")
  p.add_argument("--kaldi_fbank", action="store_true",
                 help="record w2v-BERT 2.0's Kaldi fbank as the front end (runs that used it)")
  args = parser.parse_args(argv)
  if args.command == "from-run":
    step = from_run(args.model_dir, args.out, args.step, args.vocab,
                    KALDI_FBANK if args.kaldi_fbank else None)
    print(f"[slam_jax.convert] wrote {args.out} from {args.model_dir} step {step}")
    return 0
  if args.command == "from-hf":
    fresh = from_hf(args.hf_dir, args.out, args.num_speech_layers, args.vocab_size, args.seed,
                    args.vocab)
    print(f"[slam_jax.convert] wrote {args.out}; initialised fresh (text side): "
          f"{', '.join(fresh)}")
  else:
    dropped = to_hf(args.checkpoint, args.out)
    print(f"[slam_jax.convert] wrote {args.out}; not exported (text side): {', '.join(dropped)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
