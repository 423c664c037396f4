"""In-pipeline rules: too short / too long speech, empty / long / unencodable text, counted."""
import functools

import gin
import numpy as np
import pytest
import soundfile

from slam_jax import types
from slam_jax.data import filters
from slam_jax.data import prepare


def _tone(seconds):
  t = np.arange(int(seconds * 16000)) / 16000
  return (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def messy_cache(tmp_path_factory):
  """Prepared paired data that passes preparation but breaks the pipeline's rules."""
  src = tmp_path_factory.mktemp("messy")
  d = src / "5" / "9"
  d.mkdir(parents=True)
  spec = {"5-9-0000": (1.0, "THE DOG RAN"),            # fine
          "5-9-0001": (0.04, "THE DOG"),               # 2 frames: too short
          "5-9-0002": (2.0, "THE CAT"),                # 198 frames: too long for 100
          "5-9-0003": (1.0, ""),                       # empty text
          "5-9-0004": (1.0, "THE DOG \u2603 SAT"),     # unencodable
          "5-9-0005": (1.0, "THE DOG RAN " * 6)}       # text too long for 16 tokens
  lines = []
  for uid, (seconds, text) in spec.items():
    soundfile.write(str(d / f"{uid}.flac"), _tone(seconds), 16000)
    lines.append(f"{uid} {text}")
  (d / "5-9.trans.txt").write_text("\n".join(lines) + "\n")
  cache = str(tmp_path_factory.mktemp("messy_cache"))
  config = prepare.PrepareConfig(min_seconds=0.01, empty_transcript="keep", unencodable="keep")
  prepare.prepare(str(src), cache, "train", config, num_shards=1)
  return cache


@pytest.fixture()
def gin_config():
  gin.clear_config()
  yield gin
  gin.clear_config()


def _run(name, cache, vocab_path):
  from tasks import common  # pylint: disable=g-import-not-at-top
  from tasks import librilight  # pylint: disable=g-import-not-at-top
  vocabulary = common.make_vocabulary(functools.partial(str, vocab_path))
  task = librilight.register_prepared_task(name, cache, types.KIND_PAIRED, vocabulary=vocabulary)
  filters.reset(name)
  ds = task.get_dataset({"speech": 100, "text": 16}, split="train", shuffle=False, num_epochs=1)
  out = {x["id"].decode(): x for x in ds.as_numpy_iterator()}
  return out, {k.split("/")[1]: v for k, v in filters.counts(name + "/").items()}


def test_drop_everything(messy_cache, tiny_corpus, gin_config):
  gin_config.parse_config(["FilterConfig.long_speech = 'drop'", "FilterConfig.long_text = 'drop'",
                           "FilterConfig.unencodable = 'drop'"])
  out, counts = _run("filters_drop", messy_cache, f"{tiny_corpus}/vocab/spm.model")
  assert sorted(out) == ["5-9-0000"]
  assert counts == {"too_short": 1, "speech_too_long": 1, "empty_text": 1, "unencodable": 1,
                    "text_too_long": 1}
  assert out["5-9-0000"]["text"][-1] == 1  # EOS.


def test_trim_strip_keep(messy_cache, tiny_corpus, gin_config):
  gin_config.parse_config(["FilterConfig.unencodable = 'strip'", "FilterConfig.empty_text = 'keep'",
                           "FilterConfig.min_speech_frames = 1"])
  out, counts = _run("filters_trim", messy_cache, f"{tiny_corpus}/vocab/spm.model")
  assert sorted(out) == ["5-9-0000", "5-9-0001", "5-9-0002", "5-9-0003", "5-9-0004", "5-9-0005"]
  assert counts == {"too_short": 0, "speech_too_long": 1, "empty_text": 1, "unencodable": 1,
                    "text_too_long": 1}
  assert out["5-9-0002"]["speech"].shape == (100, types.NUM_MEL_BINS)  # Trimmed before log-mel.
  assert out["5-9-0001"]["speech"].shape == (2, types.NUM_MEL_BINS)
  assert out["5-9-0005"]["text"].shape == (16,) and out["5-9-0005"]["text"][-1] == 1
  assert out["5-9-0003"]["text"].tolist() == [1]  # Kept: EOS only.
  assert 2 not in out["5-9-0004"]["text"]  # Stripped, so no UNK.
