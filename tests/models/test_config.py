"""EncoderConfig (slam_jax/models/config.py): validation names the field, presets, gin files,
and the w2v-BERT options whose defaults keep SLAM's architecture."""

import dataclasses
import glob
import os

import gin
import pytest

from slam_jax.models import config as config_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("field,value", [
    ("model_dim", 30),         # not divisible by num_heads=4 (with model_dim 30, heads 4)
    ("conv_kernel_size", 4),   # even
    ("ffn_dim", 0),
    ("num_heads", -1),
    ("num_shared_layers", 0),
    ("vocab_size", 0),
    ("dropout_rate", 1.0),
    ("conv_norm", "batch"),
    ("dtype", "float16"),
    ("remat_policy", "sometimes"),
    ("scan_layers", 1),
    ("attention_implementation", "flash"),
])
def test_bad_config_names_the_field(field, value):
  kwargs = dict(model_dim=32, num_heads=4, ffn_dim=64, conv_kernel_size=3, num_speech_layers=1,
                num_shared_layers=1, vocab_size=10)
  kwargs[field] = value
  with pytest.raises(ValueError, match=field):
    config_lib.EncoderConfig(**kwargs)


def test_library_attention_refuses_attention_dropout():
  with pytest.raises(ValueError, match="attention_dropout_rate"):
    config_lib.get_preset("tiny", attention_implementation="xla", attention_dropout_rate=0.1)


def test_group_norm_groups_must_divide_dim():
  with pytest.raises(ValueError, match="conv_norm_groups"):
    config_lib.get_preset("tiny", conv_norm="group", conv_norm_groups=5)


def test_unknown_preset_lists_valid_names():
  with pytest.raises(ValueError) as err:
    config_lib.get_preset("huge")
  for name in config_lib.PRESETS:
    assert name in str(err.value)
  with pytest.raises(ValueError, match="model_dims"):
    config_lib.get_preset("tiny", model_dims=3)


def test_presets_construct():
  for name in config_lib.PRESETS:
    assert isinstance(config_lib.get_preset(name), config_lib.EncoderConfig)
  cfg = config_lib.get_preset("600m")
  assert (cfg.model_dim, cfg.ffn_dim, cfg.num_heads) == (1024, 4096, 8)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "gin", "models", "*.gin"))))
def test_model_gin_files_parse(path):
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([path], ["make_encoder_config.vocab_size = 77"])
    cfg = config_lib.make_encoder_config()
    preset = os.path.basename(path)[:-len(".gin")]
    assert cfg.vocab_size == 77
    assert cfg.model_dim == config_lib.PRESETS[preset]["model_dim"]
  finally:
    gin.clear_config()



def test_defaults_are_slams_architecture():
  config = config_lib.get_preset("tiny")
  assert (config.front_end, config.input_projection, config.conv_causal, config.conv_bias,
          config.position_term, config.layer_norm_epsilon) == (
              "conv2d", True, False, True, "transformer_xl", 1e-6)


def test_w2v_bert_presets():
  big = config_lib.get_preset("w2v_bert_2_0")
  assert (big.model_dim, big.num_heads, big.ffn_dim, big.conv_kernel_size) == (1024, 16, 4096, 31)
  assert big.num_speech_layers + big.num_shared_layers == 24
  assert (big.shaw_left_distance, big.shaw_right_distance, big.layer_norm_epsilon) == (64, 8, 1e-5)
  tiny = config_lib.get_preset("w2v_bert_tiny")
  assert {f.name: getattr(tiny, f.name) for f in dataclasses.fields(tiny)
          if f.name in ("front_end", "conv_causal", "conv_bias", "position_term")} == {
              "front_end": "stacked", "conv_causal": True, "conv_bias": False,
              "position_term": "shaw"}


@pytest.mark.parametrize("field,value,needle", [
    ("front_end", "conv1d", "front_end must be one of"),
    ("position_term", "rope", "position_term must be one of"),
    ("conv_causal", 1, "conv_causal must be a bool"),
    ("stack_frames", 0, "stack_frames must be a positive int"),
    ("shaw_left_distance", -1, "shaw_left_distance must be an int >= 0"),
    ("layer_norm_epsilon", 0.0, "layer_norm_epsilon must be in"),
])
def test_invalid_options_name_the_field(field, value, needle):
  with pytest.raises(ValueError, match=needle):
    config_lib.get_preset("tiny", **{field: value})


def test_make_encoder_config_accepts_every_field():
  """Every EncoderConfig field can be bound through gin's make_encoder_config."""
  import inspect  # pylint: disable=g-import-not-at-top
  params = set(inspect.signature(config_lib.make_encoder_config).parameters) - {"preset"}
  assert params == {f.name for f in dataclasses.fields(config_lib.EncoderConfig)}
