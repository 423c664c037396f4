"""Parameter-count summary (shapes only) and its command line."""

import os

import gin
import pytest

from slam_jax.models import encoder as encoder_lib
from slam_jax.models import summary as summary_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tiny_counts_add_up_and_match_hand_count():
  cfg = encoder_lib.get_preset("tiny")
  counts = summary_lib.count_params(cfg)
  comps = [counts[f"component/{c}"] for c in summary_lib.COMPONENT_ORDER]
  assert sum(comps) == counts["total"]
  d, v = cfg.model_dim, cfg.vocab_size
  assert counts["text_embedder"] == v * d + 2 * d  # table + layer norm
  # Per Conformer layer: 2 FFNs, attention (q,k,v,out,pos_proj,u,v), conv module, 5 layer norms
  # (+1 conv layer norm).
  f, k = cfg.ffn_dim, cfg.conv_kernel_size
  ffn = 2 * (d * f + f + f * d + d + 2 * d)
  attn = 4 * (d * d + d) + d * d + 2 * d  # q, k, v, out (+bias); pos_proj; u, v biases
  conv = 2 * d + (d * 2 * d + 2 * d) + (k * d + d) + 2 * d + (d * d + d)
  norms = 2 * d + 2 * d  # attention pre-norm, final norm
  assert counts["speech_stack"] == cfg.num_speech_layers * (ffn + attn + conv + norms)


@pytest.mark.parametrize("preset,low,high", [("600m", 0.55e9, 0.70e9), ("2b", 1.8e9, 2.2e9)])
def test_large_presets_land_near_their_names(preset, low, high):
  total = summary_lib.count_params(encoder_lib.get_preset(preset))["total"]
  assert low < total < high, total


def test_cli_with_gin_file(capsys):
  gin.clear_config()
  try:
    assert summary_lib.main([f"--gin_file={os.path.join(REPO, 'gin/models/tiny.gin')}"]) == 0
  finally:
    gin.clear_config()
  text = capsys.readouterr().out
  for comp in summary_lib.COMPONENT_ORDER + ("total",):
    assert comp in text
  total = summary_lib.count_params(encoder_lib.get_preset("tiny"))["total"]
  assert f"{total:,}" in text
