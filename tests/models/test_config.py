"""EncoderConfig: defaults of the w2v-BERT options keep SLAM's architecture; validation."""
import dataclasses

import pytest

from slam_jax.models import config as config_lib


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
