"""slam_jax.inference / slam_jax.embed: padding invariance, layer readout, the command."""
import json
import os

import jax
import numpy as np
import pytest
import soundfile

from slam_jax import convert
from slam_jax import embed as embed_lib
from slam_jax import encoder_io
from slam_jax import inference
from slam_jax.data import vocab as vocab_lib
from slam_jax.models import config as config_lib
from slam_jax.models import encoder as encoder_lib

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "hello world"]


def _waveform(seconds, seed):
  rng = np.random.RandomState(seed)
  t = np.arange(int(16000 * seconds)) / 16000.0
  return (0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t)
          + 0.05 * rng.randn(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
  prefix = str(tmp_path_factory.mktemp("spm") / "spm")
  return vocab_lib.train_sentencepiece(SENTENCES * 4, prefix, vocab_size=40)


def _checkpoint(root, preset, spm_model):
  config = config_lib.get_preset(preset, dropout_rate=0.0)
  rng = np.random.RandomState(0)
  flat = encoder_io.flatten(convert.abstract_params(config))
  params = encoder_io.unflatten({  # N(0, 0.2) (+1 for LayerNorm scales): no compilation.
      k: (0.2 * rng.standard_normal(v.shape) + k.endswith("/scale")).astype(np.float32)
      for k, v in flat.items()})
  frontend = convert.KALDI_FBANK if config.front_end == "stacked" else None
  path = os.path.join(root, preset)
  encoder_io.save(path, config, params, frontend=frontend, vocab=spm_model)
  return path


@pytest.fixture(scope="module", params=["tiny", "w2v_bert_tiny"])
def encoder(request, tmp_path_factory, spm_model):
  path = _checkpoint(str(tmp_path_factory.mktemp("ckpt")), request.param, spm_model)
  return inference.Encoder.load(path, batch_size=4, pad_multiple=32)


def _close(a, b):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_batched_calls_equal_single_calls(encoder):
  """Different paddings (the first input padded to 32 frames alone, to 64 in the batch) and
  batch neighbours give the same vectors at every layer."""
  audio = [_waveform(s, i) for i, s in enumerate((0.3, 0.5, 0.6))]
  texts = ["the cat sat", "hello world on the mat in the park", [5, 6, 7]]
  for layer in (0, 1, -1):
    batched = encoder.embed_speech(audio, layer=layer)
    for a, b in zip(audio, batched):
      single = encoder.embed_speech(a, layer=layer)
      _close(single.frames, b.frames)
      _close(single.pooled, b.pooled)
  batched = encoder.embed_text(texts)
  for t, b in zip(texts, batched):
    _close(encoder.embed_text(t).frames, b.frames)
  pairs = encoder.embed_pair(audio, texts)
  for a, t, p in zip(audio, texts, pairs):
    single = encoder.embed_pair(a, t)
    _close(single.speech.frames, p.speech.frames)
    _close(single.text.frames, p.text.frames)
    _close(single.pooled, p.pooled)
  # Frame counts follow the front end: 10 ms frames, 4x (conv2d) or 2x (stacked) fewer.
  frames = 1 + (audio[2].size - 400) // 160
  sub = -(-frames // 4) if encoder.config.front_end == "conv2d" else frames // 2
  assert batched[0].frames.shape[1] == encoder.config.model_dim
  assert encoder.embed_speech(audio[2]).frames.shape == (sub, encoder.config.model_dim)


def test_layers_and_pooling_match_the_encoder(encoder):
  """Layer S of embed_speech is the speech stack's output, layer -1 the shared stack's; text's
  layer -1 is the shared stack's text output; pooled is the mean of the frames."""
  cfg = encoder.config
  wav = _waveform(0.5, 3)
  feats = encoder.features(wav)
  ids = encoder.tokenize("the cat sat on the mat")
  assert ids[-1] == vocab_lib.EOS_ID and len(ids) > 2
  # One direct forward pass: row 0 the speech alone, row 1 the text alone (no padding at all).
  t, n = feats.shape[0], len(ids)
  speech_mask = np.stack([np.ones(t, np.int32), np.zeros(t, np.int32)])
  text_segments = np.stack([np.zeros(n, np.int32), np.ones(n, np.int32)])
  out = jax.jit(encoder_lib.SlamEncoder(cfg).apply)(
      {"params": encoder.params}, np.stack([feats, feats]), speech_mask, np.stack([ids, ids]),
      text_segments, np.tile(np.arange(n, dtype=np.int32), (2, 1)))
  valid = np.asarray(out.speech_valid[0])
  speech = encoder.embed_speech(wav, layer=cfg.num_speech_layers)
  _close(speech.frames, np.asarray(out.speech_hidden[0])[valid])
  last = encoder.embed_speech(wav)
  _close(last.frames, np.asarray(out.shared_speech[0])[valid])
  _close(last.pooled, np.asarray(out.shared_speech[0])[valid].mean(axis=0))
  assert encoder.embed_speech(wav, layer=0).frames.shape == last.frames.shape
  _close(encoder.embed_text("the cat sat on the mat").frames, np.asarray(out.shared_text[1]))
  with pytest.raises(ValueError, match="layer=99 out of range"):
    encoder.embed_text("hello", layer=99)


def test_embed_command_writes_npy(tmp_path, spm_model):
  ckpt = _checkpoint(str(tmp_path), "w2v_bert_tiny", spm_model)
  path = str(tmp_path / "a.flac")
  soundfile.write(path, _waveform(0.4, 1), 16000)
  out = str(tmp_path / "out")
  assert embed_lib.main(["--checkpoint", ckpt, "--audio", path, "--text", "hello world",
                         "--out_dir", out, "--batch_size", "4"]) == 0
  pooled = np.load(os.path.join(out, "speech_0.pooled.npy"))
  frames = np.load(os.path.join(out, "speech_0.frames.npy"))
  assert pooled.shape == (32,) and frames.shape == (19, 32)  # 38 frames -> 19 stacked steps
  np.testing.assert_allclose(pooled, frames.mean(axis=0), rtol=1e-6, atol=1e-6)
  assert np.load(os.path.join(out, "text_0.frames.npy")).shape[1] == 32
  with open(os.path.join(out, "manifest.json")) as f:
    assert json.load(f)["files"]["text_0.pooled.npy"] == "hello world"
  assert embed_lib.main(["--checkpoint", ckpt, "--audio", path, "--text", "hello world",
                         "--pair", "--out_dir", out, "--batch_size", "4"]) == 0
  assert np.load(os.path.join(out, "pair_0.speech.npy")).shape == (19, 32)
