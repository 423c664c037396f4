"""The offline demo corpus: layout, manifest, determinism per seed."""
import glob
import hashlib
import json
import os

import pytest
import soundfile

from slam_jax.data.demo import corpus
from slam_jax.data import layout


def _digest(root):
  out = {}
  for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
    name = os.path.relpath(path, root)
    if os.path.isdir(path) or name in ("manifest.json", "README.md") or name.endswith(
        "summary.json"):
      continue
    with open(path, "rb") as f:
      out[name] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_layout_and_manifest(tiny_corpus):
  with open(os.path.join(tiny_corpus, "manifest.json")) as f:
    manifest = json.load(f)
  size = corpus.SIZES["tiny"]
  for name in ("speech", "paired"):
    for split, speakers in zip(corpus.SPLITS, size.speakers):
      scan = layout.scan(os.path.join(tiny_corpus, name, split))
      n = speakers * size.chapters_per_speaker * size.utterances_per_chapter
      assert len(scan.utterances) == manifest["sets"][name][split]["utterances"] == n
      assert all(u.audio_path.endswith(".flac") for u in scan.utterances)
      assert all((u.transcript is not None) == (name == "paired") for u in scan.utterances)
      info = soundfile.info(scan.utterances[0].audio_path)
      assert info.samplerate == 16000 and info.channels == 1
      assert manifest["prepared"][name][split]["examples_written"] == n
  # LibriSpeech naming: SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.
  u = layout.scan(os.path.join(tiny_corpus, "paired", "train")).utterances[0]
  speaker, chapter, _ = u.id.split("-")
  assert u.audio_path.endswith(os.path.join(speaker, chapter, u.id + ".flac"))
  assert u.transcript.isupper()
  text = layout.scan(os.path.join(tiny_corpus, "text", "train")).utterances
  assert len(text) == size.text_sentences[0] and all(t.audio_path is None for t in text)
  assert manifest["vocab"]["pieces"] == size.vocab_size
  train_speakers = {u.speaker for u in layout.scan(os.path.join(tiny_corpus, "speech",
                                                                "train")).utterances}
  val_speakers = {u.speaker for u in layout.scan(os.path.join(tiny_corpus, "speech",
                                                              "validation")).utterances}
  assert not train_speakers & val_speakers
  assert "hours" in open(os.path.join(tiny_corpus, "README.md")).read()


@pytest.mark.slow
def test_same_seed_same_bytes(tiny_corpus, tmp_path):
  again = json.loads(json.dumps(corpus.build(str(tmp_path / "again"), seed=0, size_name="tiny",
                                             workers=2)))
  # vocab/chars.* is derived later, on first use of the character ASR task (tasks/downstream.py).
  shared = {k: v for k, v in _digest(tiny_corpus).items() if not k.startswith("vocab/chars.")}
  assert _digest(str(tmp_path / "again")) == shared
  with open(os.path.join(tiny_corpus, "manifest.json")) as f:
    first = json.load(f)
  for m in (first, again):
    m.pop("build_seconds")
    m.pop("workers")
  assert first == again
