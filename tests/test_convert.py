"""slam_jax.convert: parity with transformers' Wav2Vec2BertModel both ways, strict key checks.

The HF models are random tiny ones built from configs (nothing is downloaded). Every parameter,
LayerNorms included, is perturbed away from its initial value so that a wrongly mapped tensor
changes the outputs.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax import convert
from slam_jax import encoder_io
from slam_jax.models import config as config_lib
from slam_jax.models import encoder as encoder_lib

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = dict(rtol=5e-3, atol=5e-3)
B, FRAMES = 2, 26  # 13 stacked steps: more than the Shaw window (6 left + 2 right) spans.
LENGTHS = (26, 17)  # -> 13 and 8 valid steps
NUM_SPEECH = 1
HF_TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=3,
               feature_projection_input_dim=160, conv_depthwise_kernel_size=5,
               left_max_position_embeddings=6, right_max_position_embeddings=2,
               mask_time_prob=0.05, layerdrop=0.0, hidden_dropout=0.0, activation_dropout=0.0,
               attention_dropout=0.0, feat_proj_dropout=0.0, conformer_conv_dropout=0.0)


def random_params(config, seed):
  """Random params of `config` (no compilation): N(0, 0.2), plus 1 for LayerNorm scales."""
  rng = np.random.RandomState(seed)
  flat = encoder_io.flatten(convert.abstract_params(config))
  return encoder_io.unflatten({
      k: (0.2 * rng.standard_normal(v.shape) + (k.endswith("/scale"))).astype(np.float32)
      for k, v in flat.items()})


def _inputs():
  rng = np.random.RandomState(0)
  frames = rng.randn(B, FRAMES, 80).astype(np.float32)
  mask = (np.arange(FRAMES)[None, :] < np.asarray(LENGTHS)[:, None]).astype(np.int32)
  frames = (frames * mask[..., None]).astype(np.float32)
  steps = FRAMES // 2
  hf_features = frames.reshape(B, steps, 160)
  hf_mask = (np.arange(steps)[None, :] < (np.asarray(LENGTHS) // 2)[:, None]).astype(np.int64)
  return frames, mask, hf_features, hf_mask


def _hf_model(hf_dir=None, config=None):
  if hf_dir is not None:
    model, info = transformers.Wav2Vec2BertModel.from_pretrained(
        hf_dir, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
  else:
    torch.manual_seed(0)
    model = transformers.Wav2Vec2BertModel(config).eval()
    with torch.no_grad():
      for p in model.parameters():
        p.add_(0.2 * torch.randn_like(p))
  return model.eval()


def _hf_run(model, hf_features, hf_mask):
  with torch.no_grad():
    out = model(torch.from_numpy(hf_features), attention_mask=torch.from_numpy(hf_mask),
                output_hidden_states=True)
  # hidden_states: the stack's input, then every layer's output.
  hidden = [h.numpy() for h in out.hidden_states]
  assert len(hidden) == model.config.num_hidden_layers + 1
  return hidden, out.last_hidden_state.numpy()


def _our_run(config, params, frames, mask):
  text = jnp.zeros((B, 2), jnp.int32)
  out = encoder_lib.SlamEncoder(config).apply(
      {"params": params}, jnp.asarray(frames), jnp.asarray(mask), text, text, text)
  return np.asarray(out.speech_hidden), np.asarray(out.shared_speech), np.asarray(out.speech_valid)


def _save_hf(model, directory):
  model.save_pretrained(directory, safe_serialization=True)
  return directory


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
  config = transformers.Wav2Vec2BertConfig(**HF_TINY, attn_implementation="eager")
  model = _hf_model(config=config)
  return model, _save_hf(model, str(tmp_path_factory.mktemp("hf_tiny")))


def test_from_hf_matches_transformers(hf_tiny, tmp_path):
  model, hf_dir = hf_tiny
  frames, mask, hf_features, hf_mask = _inputs()
  hidden, last = _hf_run(model, hf_features, hf_mask)
  out = str(tmp_path / "ckpt")
  fresh = convert.main(["from-hf", "--hf_dir", hf_dir, "--out", out,
                        "--num_speech_layers", str(NUM_SPEECH), "--vocab_size", "16"])
  assert fresh == 0
  config, params = encoder_io.load(out)
  assert config.num_speech_layers == NUM_SPEECH and config.num_shared_layers == 2
  speech, shared, valid = _our_run(config, params, frames, mask)
  np.testing.assert_array_equal(valid, hf_mask.astype(bool))
  np.testing.assert_allclose(speech[valid], hidden[NUM_SPEECH][valid], **TOL)
  np.testing.assert_allclose(shared[valid], last[valid], **TOL)
  assert encoder_io.load_frontend(out) == convert.KALDI_FBANK
  # The mask embedding came across too.
  np.testing.assert_allclose(params["mask_embedding"],
                             model.masked_spec_embed.detach().numpy(), rtol=0, atol=0)


def test_to_hf_matches_ours(tmp_path):
  config = config_lib.get_preset("w2v_bert_tiny", vocab_size=16)
  params = random_params(config, seed=3)
  ckpt = str(tmp_path / "ckpt")
  encoder_io.save(ckpt, config, params)
  hf_dir = str(tmp_path / "hf")
  assert convert.main(["to-hf", "--checkpoint", ckpt, "--out", hf_dir]) == 0
  model = _hf_model(hf_dir)
  frames, mask, hf_features, hf_mask = _inputs()
  hidden, last = _hf_run(model, hf_features, hf_mask)
  speech, shared, valid = _our_run(config, params, frames, mask)
  np.testing.assert_allclose(shared[valid], last[valid], **TOL)
  # HF's hidden state after the speech stack carries the folded modality_embedding[0].
  modality0 = params["modality_embedding"][0]
  np.testing.assert_allclose(speech[valid] + modality0, hidden[config.num_speech_layers][valid],
                             **TOL)


def test_round_trip_is_exact_and_scan_independent(hf_tiny, tmp_path):
  model, hf_dir = hf_tiny
  _, tensors = convert.read_hf_dir(hf_dir)
  with open(os.path.join(hf_dir, "config.json")) as f:
    hf_config = json.load(f)
  for scan in (True, False):
    config = convert.encoder_config_from_hf(hf_config, NUM_SPEECH, 16, scan_layers=scan)
    params, fresh = convert.hf_to_params(tensors, config)
    assert fresh == ["text_embedder/embedding", "text_embedder/norm/bias",
                     "text_embedder/norm/scale"]
    np.testing.assert_array_equal(params["modality_embedding"], 0.0)
    back, dropped = convert.params_to_hf(params, config, convert.hf_state_shapes(hf_config))
    assert dropped == ["text_embedder/embedding", "text_embedder/norm/bias",
                       "text_embedder/norm/scale", "modality_embedding[1]"]
    assert set(back) == set(tensors)
    for key, value in tensors.items():
      np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_strict_checks_list_leftovers(hf_tiny):
  _, hf_dir = hf_tiny
  hf_config, tensors = convert.read_hf_dir(hf_dir)
  config = convert.encoder_config_from_hf(hf_config, NUM_SPEECH, 16)
  extra = dict(tensors, **{"encoder.layers.0.extra.weight": np.zeros(3, np.float32)})
  with pytest.raises(convert.ConversionError, match=r"unused: encoder.layers.0.extra.weight"):
    convert.hf_to_params(extra, config)
  missing = {k: v for k, v in tensors.items() if k != "encoder.layers.2.ffn2.output_dense.bias"}
  with pytest.raises(convert.ConversionError,
                     match=r"missing: encoder.layers.2.ffn2.output_dense.bias"):
    convert.hf_to_params(missing, config)
  # Our config with one layer fewer than HF's leaves HF's last layer unused.
  short = config.replace(num_shared_layers=1)
  with pytest.raises(convert.ConversionError, match=r"unused: encoder.layers.2.conv_module"):
    convert.hf_to_params(tensors, short)
  wide = config.replace(ffn_dim=48)
  with pytest.raises(convert.ConversionError, match=r"size mismatches"):
    convert.hf_to_params(tensors, wide)
  params, _ = convert.hf_to_params(tensors, config)
  params = dict(params, stray=np.zeros(2, np.float32))
  with pytest.raises(convert.ConversionError, match=r"unused: stray"):
    convert.params_to_hf(params, config, convert.hf_state_shapes(hf_config))
  shapes = dict(convert.hf_state_shapes(hf_config), **{"encoder.new.weight": (2,)})
  params.pop("stray")
  with pytest.raises(convert.ConversionError, match=r"not written: encoder.new.weight"):
    convert.params_to_hf(params, config, shapes)


def test_rejects_configs_it_cannot_match():
  with pytest.raises(convert.ConversionError, match="position_embeddings_type"):
    convert.encoder_config_from_hf({"position_embeddings_type": "rotary"})
  with pytest.raises(convert.ConversionError, match="front_end"):
    convert.hf_config_dict(config_lib.get_preset("tiny"))


def test_from_hf_records_the_kaldi_front_end():
  features = pytest.importorskip("slam_jax.data.features")
  want = features.kaldi_fbank_config()
  assert features.LogMelConfig(**convert.KALDI_FBANK) == want


def test_from_run_extracts_the_encoder_of_a_training_checkpoint(tmp_path):
  from slam_jax import checkpoints as checkpoints_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get_preset("w2v_bert_tiny", vocab_size=16)
  encoder = random_params(config, seed=4)
  run = tmp_path / "run"
  ckpt = checkpoints_lib.Checkpointer(str(run / "checkpoints"),
                                      checkpoints_lib.CheckpointConfig(async_save=False))
  state = {"params": {"encoder": encoder, "quantizer": {"w": np.ones(3, np.float32)}},
           "step": np.int32(7)}
  ckpt.save(7, state, {"batches_consumed": 7}, force=True)
  ckpt.close()
  with pytest.raises(FileNotFoundError, match="encoder_config.json"):
    convert.from_run(str(run), str(tmp_path / "out0"))
  encoder_io.write_config(str(run / encoder_io.CONFIG_FILE), config)
  assert convert.main(["from-run", "--model_dir", str(run), "--out", str(tmp_path / "out"),
                       "--kaldi_fbank"]) == 0
  loaded_config, loaded = encoder_io.load(str(tmp_path / "out"))
  assert loaded_config == config
  assert encoder_io.load_frontend(str(tmp_path / "out")) == convert.KALDI_FBANK
  flat, want = encoder_io.flatten(loaded), encoder_io.flatten(encoder)
  assert set(flat) == set(want)
  for k in want:
    np.testing.assert_array_equal(flat[k], want[k], err_msg=k)
