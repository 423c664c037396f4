"""EncoderConfig (slam_jax/models/config.py): validation names the field, presets, gin files."""

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
