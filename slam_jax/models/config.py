"""EncoderConfig: the SLAM encoder's architecture, its size presets and the gin entry point.

A module of its own so the layers (conformer.py, encoder.py) and everything above them import
the configuration without importing each other. gin names `make_encoder_config` as
`slam_jax.models.encoder.make_encoder_config` (its historical home), so gin files are unchanged.
"""

import dataclasses
from typing import Any, Dict, Optional

import gin

from slam_jax.models import attention as attention_lib
from slam_jax.models import layers as layers_lib

CONV_NORMS = ("layer", "group")
DTYPES = ("float32", "bfloat16")
# Speech front ends: 'conv2d' (two 3x3 stride-2 convs, 4x; SLAM / w2v-BERT) or 'stacked'
# (`stack_frames` consecutive frames concatenated -> LayerNorm -> linear; w2v-BERT 2.0 / HF
# Wav2Vec2BertModel's feature projection, 2x).
FRONT_ENDS = ("conv2d", "stacked")
# Attention position terms: 'transformer_xl' (sinusoid -> projection, u/v biases, distances
# clipped to [-M, M]) or 'shaw' (a learned per-layer distance embedding shared by the heads,
# key-minus-query distances clamped to [-shaw_left_distance, shaw_right_distance]: HF
# Wav2Vec2Bert's position_embeddings_type='relative_key').
POSITION_TERMS = ("transformer_xl", "shaw")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Architecture of the SLAM encoder (plain frozen dataclass; gin binds `make_encoder_config`).

  Attributes:
    model_dim: width D of every Conformer layer (even; divisible by num_heads).
    num_heads: attention heads.
    ffn_dim: hidden size of each (half-step) feed-forward module.
    conv_kernel_size: depthwise conv kernel size (odd).
    num_speech_layers: speech-only Conformer layers (w2v-BERT's "contrastive module").
    num_shared_layers: shared multimodal Conformer layers.
    vocab_size: text vocabulary size (SentencePiece ids; 0 = PAD).
    num_mel_bins: log-mel bins per frame.
    subsampling_channels: channels of the two feature-encoder convs.
    dropout_rate: residual / feed-forward / embedding dropout.
    attention_dropout_rate: dropout on attention probabilities.
    max_relative_distance: relative distances are clipped to [-M, M].
    conv_norm: 'layer' (LayerNorm, default) or 'group' (masked group norm; stats over valid
      positions of each row, no mutable state).
    conv_norm_groups: channel groups of the masked group norm (divides model_dim).
    dtype: compute dtype 'float32' | 'bfloat16' (params are always fp32).
    scan_layers: stack layers with nn.scan (leading 'layers' param axis) instead of a Python loop.
    remat_policy: 'none' | 'full' | 'nothing_saveable' | 'dots_saveable' |
      'dots_with_no_batch_dims_saveable' | 'everything_saveable' (jax.checkpoint_policies).
    attention_implementation: 'slam' (our attention core, any backend), 'cudnn' (cuDNN fused
      attention through jax.nn.dot_product_attention; NVIDIA GPUs, bf16) or 'xla' (the same call
      on XLA). 'cudnn' and 'xla' need attention_dropout_rate == 0.

  Options for matching w2v-BERT 2.0 (HF `Wav2Vec2BertModel`; see gin/models/w2v_bert_2_0.gin and
  docs/interop.md). Their defaults keep SLAM's architecture and parameter names unchanged:
    front_end: one of FRONT_ENDS ('conv2d' default; 'stacked' ignores subsampling_channels).
    stack_frames: frames concatenated per step by the 'stacked' front end.
    input_projection: a dense layer between the front end (and span masking) and the speech
      stack (True, SLAM); HF has none.
    conv_causal: the depthwise conv reads the K-1 previous frames (left padding K-1) instead of a
      centred window.
    conv_bias: biases in the conv module's pointwise and depthwise layers (HF has none).
    position_term: one of POSITION_TERMS.
    shaw_left_distance, shaw_right_distance: clamps of the 'shaw' term (HF: 64 and 8).
    layer_norm_epsilon: of the Conformer layers' and the stacked front end's LayerNorms (HF:
      1e-5; the text embedder keeps 1e-6).
  """
  model_dim: int
  num_heads: int
  ffn_dim: int
  conv_kernel_size: int
  num_speech_layers: int
  num_shared_layers: int
  vocab_size: int
  num_mel_bins: int = 80
  subsampling_channels: int = 128
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  max_relative_distance: int = 128
  conv_norm: str = "layer"
  conv_norm_groups: int = 32
  dtype: str = "float32"
  scan_layers: bool = True
  remat_policy: str = "none"
  attention_implementation: str = "slam"
  front_end: str = "conv2d"
  stack_frames: int = 2
  input_projection: bool = True
  conv_causal: bool = False
  conv_bias: bool = True
  position_term: str = "transformer_xl"
  shaw_left_distance: int = 64
  shaw_right_distance: int = 8
  layer_norm_epsilon: float = 1e-6

  def __post_init__(self):
    positive = ("model_dim", "num_heads", "ffn_dim", "conv_kernel_size", "num_speech_layers",
                "num_shared_layers", "vocab_size", "num_mel_bins", "subsampling_channels",
                "max_relative_distance", "conv_norm_groups", "stack_frames")
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"EncoderConfig.{name} must be a positive int, got {value!r}")
    if self.model_dim % self.num_heads:
      raise ValueError(f"EncoderConfig.model_dim ({self.model_dim}) must be divisible by "
                       f"num_heads ({self.num_heads})")
    if self.model_dim % 2:
      raise ValueError(f"EncoderConfig.model_dim must be even (sinusoidal positions), "
                       f"got {self.model_dim}")
    if self.conv_kernel_size % 2 == 0:
      raise ValueError(f"EncoderConfig.conv_kernel_size must be odd (a centred kernel), "
                       f"got {self.conv_kernel_size}")
    for name in ("dropout_rate", "attention_dropout_rate"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        raise ValueError(f"EncoderConfig.{name} must be in [0, 1), got {value!r}")
    if self.conv_norm not in CONV_NORMS:
      raise ValueError(f"EncoderConfig.conv_norm must be one of {CONV_NORMS}, "
                       f"got {self.conv_norm!r}")
    if self.conv_norm == "group" and self.model_dim % self.conv_norm_groups:
      raise ValueError(f"EncoderConfig.conv_norm_groups ({self.conv_norm_groups}) must divide "
                       f"model_dim ({self.model_dim}) when conv_norm='group'")
    if self.dtype not in DTYPES:
      raise ValueError(f"EncoderConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
    if not isinstance(self.scan_layers, bool):
      raise ValueError(f"EncoderConfig.scan_layers must be a bool, got {self.scan_layers!r}")
    if self.attention_implementation not in attention_lib.IMPLEMENTATIONS:
      raise ValueError(f"EncoderConfig.attention_implementation must be one of "
                       f"{attention_lib.IMPLEMENTATIONS}, got {self.attention_implementation!r}")
    if self.attention_implementation != "slam" and self.attention_dropout_rate > 0:
      raise ValueError(f"EncoderConfig.attention_implementation="
                       f"{self.attention_implementation!r} has no attention dropout: set "
                       f"attention_dropout_rate=0 or attention_implementation='slam'")
    for name, choices in (("front_end", FRONT_ENDS), ("position_term", POSITION_TERMS)):
      if getattr(self, name) not in choices:
        raise ValueError(f"EncoderConfig.{name} must be one of {choices}, "
                         f"got {getattr(self, name)!r}")
    for name in ("input_projection", "conv_causal", "conv_bias"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"EncoderConfig.{name} must be a bool, got {getattr(self, name)!r}")
    for name in ("shaw_left_distance", "shaw_right_distance"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"EncoderConfig.{name} must be an int >= 0, got {value!r}")
    if not 0.0 < self.layer_norm_epsilon < 1.0:
      raise ValueError(f"EncoderConfig.layer_norm_epsilon must be in (0, 1), "
                       f"got {self.layer_norm_epsilon!r}")
    if self.remat_policy not in layers_lib.REMAT_CHOICES:
      raise ValueError(f"EncoderConfig.remat_policy must be one of "
                       f"{list(layers_lib.REMAT_CHOICES)}, got {self.remat_policy!r}")

  @property
  def compute_dtype(self):
    """The jnp compute dtype."""
    return layers_lib.compute_dtype(self.dtype)

  def replace(self, **overrides) -> "EncoderConfig":
    """A copy with some fields changed (validated again)."""
    return dataclasses.replace(self, **overrides)


# Size presets (param counts: `python -m slam_jax.models.summary --preset=<name>`). Sources:
#  - 600m: SLAM's main model, ~600M params, model dim 1024 (SLAM, arXiv 2110.10329, Sec. 2-3),
#    which follows w2v-BERT XL / Conformer XL (arXiv 2108.06209; Zhang et al. 2020, arXiv
#    2010.10504): 24 Conformer layers of dim 1024, 8 heads, FFN 4096 (4x), conv kernel 5.
#    The 8 speech-only + 16 shared split, the 32k SentencePiece vocabulary and the 128 subsampling
#    channels could not be checked against the paper text: verify before quoting.
#  - 2b: mSLAM's larger model (~2B, arXiv 2202.01374), text as *characters* (the abstract's
#    "character-level text"); width/depth/vocab here are sized to land near 2B and are unverified.
#  - base: an in-between development size (no paper source).
#  - tiny: seconds on CPU, for tests and smoke runs (no paper source).
#  - w2v_bert_2_0: w2v-BERT 2.0 (Seamless, 600M; HF `facebook/w2v-bert-2.0`, `Wav2Vec2BertModel`
#    defaults): 24 Conformer layers of dim 1024, 16 heads, FFN 4096, causal depthwise kernel 31
#    with LayerNorm, no conv biases, Shaw distances [-64, +8], LayerNorm eps 1e-5, two 80-bin
#    fbank frames stacked (160 dims) -> LayerNorm -> linear. The 8 speech-only + 16 shared split
#    follows fairseq2's w2v-BERT 600m (the last 16 layers are the MLM "BERT" layers; its 300m arch
#    is 12 layers with 8 of them BERT): verify before quoting. Text side: SLAM's 32k vocabulary.
#  - w2v_bert_tiny: the same architecture at test size (parity tests against transformers).
_W2V_BERT = dict(front_end="stacked", stack_frames=2, input_projection=False, conv_causal=True,
                 conv_bias=False, conv_norm="layer", position_term="shaw", shaw_left_distance=64,
                 shaw_right_distance=8, layer_norm_epsilon=1e-5)
PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(model_dim=32, num_heads=2, ffn_dim=64, conv_kernel_size=3, num_speech_layers=1,
                 num_shared_layers=1, vocab_size=128, subsampling_channels=4,
                 max_relative_distance=16, conv_norm_groups=4),
    "base": dict(model_dim=512, num_heads=8, ffn_dim=2048, conv_kernel_size=5,
                 num_speech_layers=4, num_shared_layers=8, vocab_size=32000,
                 subsampling_channels=64),
    "600m": dict(model_dim=1024, num_heads=8, ffn_dim=4096, conv_kernel_size=5,
                 num_speech_layers=8, num_shared_layers=16, vocab_size=32000,
                 subsampling_channels=128),
    "2b": dict(model_dim=1536, num_heads=16, ffn_dim=6144, conv_kernel_size=5,
               num_speech_layers=8, num_shared_layers=28, vocab_size=4096,
               subsampling_channels=128),
    "w2v_bert_2_0": dict(model_dim=1024, num_heads=16, ffn_dim=4096, conv_kernel_size=31,
                         num_speech_layers=8, num_shared_layers=16, vocab_size=32000,
                         **_W2V_BERT),
    "w2v_bert_tiny": dict(model_dim=32, num_heads=2, ffn_dim=64, conv_kernel_size=5,
                          num_speech_layers=1, num_shared_layers=2, vocab_size=128,
                          **{**_W2V_BERT, "shaw_left_distance": 6, "shaw_right_distance": 2}),
}


def get_preset(name: str, **overrides) -> EncoderConfig:
  """The EncoderConfig of a named size preset, with field overrides.

  Raises:
    ValueError: unknown preset name (the message lists the valid ones) or an invalid field.
  """
  if name not in PRESETS:
    raise ValueError(f"Unknown encoder preset {name!r}; valid presets: {sorted(PRESETS)}")
  unknown = set(overrides) - {f.name for f in dataclasses.fields(EncoderConfig)}
  if unknown:
    raise ValueError(f"Unknown EncoderConfig field(s) {sorted(unknown)} in overrides of preset "
                     f"{name!r}")
  return EncoderConfig(**{**PRESETS[name], **overrides})


@gin.configurable(module="slam_jax.models.encoder")
def make_encoder_config(preset: str = "tiny",
                        model_dim: Optional[int] = None,
                        num_heads: Optional[int] = None,
                        ffn_dim: Optional[int] = None,
                        conv_kernel_size: Optional[int] = None,
                        num_speech_layers: Optional[int] = None,
                        num_shared_layers: Optional[int] = None,
                        vocab_size: Optional[int] = None,
                        num_mel_bins: Optional[int] = None,
                        subsampling_channels: Optional[int] = None,
                        dropout_rate: Optional[float] = None,
                        attention_dropout_rate: Optional[float] = None,
                        max_relative_distance: Optional[int] = None,
                        conv_norm: Optional[str] = None,
                        conv_norm_groups: Optional[int] = None,
                        dtype: Optional[str] = None,
                        scan_layers: Optional[bool] = None,
                        remat_policy: Optional[str] = None,
                        attention_implementation: Optional[str] = None,
                        front_end: Optional[str] = None,
                        stack_frames: Optional[int] = None,
                        input_projection: Optional[bool] = None,
                        conv_causal: Optional[bool] = None,
                        conv_bias: Optional[bool] = None,
                        position_term: Optional[str] = None,
                        shaw_left_distance: Optional[int] = None,
                        shaw_right_distance: Optional[int] = None,
                        layer_norm_epsilon: Optional[float] = None) -> EncoderConfig:
  """Gin entry point for the encoder architecture: a preset plus explicit field overrides.

  gin/models/<size>.gin bind `make_encoder_config.preset` and any field; unset (None) fields keep
  the preset's value. Layers never read gin: they receive the returned EncoderConfig.

  Args:
    preset: one of PRESETS ('tiny', 'base', '600m', '2b', 'w2v_bert_2_0', 'w2v_bert_tiny').
    model_dim ... layer_norm_epsilon: EncoderConfig fields (see its docstring); None =
      preset value.

  Returns:
    A validated EncoderConfig.
  """
  overrides = {k: v for k, v in locals().items() if k != "preset" and v is not None}
  return get_preset(preset, **overrides)
