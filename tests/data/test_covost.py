"""CoVoST 2 preparation from the official TSV layout with generated MP3 clips, and its task."""
import os

import numpy as np
import seqio

from slam_jax import types
from slam_jax.data import covost
import soundfile

def write_mp3(path, seconds, freq, rate=48000):
  t = np.arange(int(seconds * rate)) / rate
  soundfile.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate,
                  format="MP3")


HEADER = "path\tsentence\ttranslation\tclient_id\n"


def _layout(root):
  clips = os.path.join(root, "cv", "en", "clips")
  os.makedirs(clips)
  covost_dir = os.path.join(root, "covost")
  os.makedirs(covost_dir)
  rows = {"train": [("common_voice_en_1.mp3", "Hello world.", "Hallo Welt.", "a"),
                    ("common_voice_en_2.mp3", "Good morning.", "Guten Morgen.", "b"),
                    ("common_voice_en_9.mp3", "Missing clip.", "Fehlt.", "c")],
          "dev": [("common_voice_en_3.mp3", "Thank you.", "Danke schön.", "d")]}
  for split, items in rows.items():
    with open(covost.tsv_path(covost_dir, "de", split), "w", encoding="utf-8") as f:
      f.write(HEADER)
      for i, (path, sentence, translation, client) in enumerate(items):
        f.write(f"{path}\t{sentence}\t{translation}\t{client}\n")
        if "9" not in path:
          write_mp3(os.path.join(clips, path), seconds=0.6 + 0.1 * i, freq=300.0 + 50 * i)
  return covost_dir, clips


def test_prepare_and_task(tmp_path, monkeypatch):
  covost_dir, clips = _layout(str(tmp_path))
  out = str(tmp_path / "cache" / "covost2_en_de")
  config = covost.prepare_lib.PrepareConfig(max_seconds=30.0)
  summary = covost.prepare_split(covost_dir, clips, "de", "train", out, config)
  assert summary["examples_written"] == 2 and summary["counts"] == {"missing_audio": 1}
  assert covost.prepare_split(covost_dir, clips, "de", "dev", out, config)[
      "examples_written"] == 1
  covost.train_target_vocab(["Hallo Welt.", "Guten Morgen.", "Danke schön."] * 20,
                            os.path.join(out, "spm_target"), vocab_size=40)
  monkeypatch.setenv("COVOST2_CACHE", str(tmp_path / "cache"))
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  task = seqio.get_mixture_or_task("covost2_en_de")
  rows = list(task.get_dataset({"speech": 300, "text": 32}, split="validation",
                               shuffle=False).as_numpy_iterator())
  assert len(rows) == 1
  vocab = task.output_features[types.TASK_TEXT].vocabulary
  # Case and punctuation are kept (CoVoST 2 scores case-sensitive BLEU).
  assert vocab.decode(rows[0][types.TASK_TEXT][:-1].tolist()) == "Danke schön."
  frames = rows[0][types.TASK_SPEECH].shape[0]
  assert abs(frames - 60) <= 8  # ~0.6 s of 10 ms frames (MP3 adds a little padding)
  assert rows[0][types.TASK_KIND] == types.KIND_PAIRED


def test_release_tsv_with_split_column(tmp_path):
  covost_dir = str(tmp_path)
  with open(covost.tsv_path(covost_dir, "tr"), "w", encoding="utf-8") as f:
    f.write("path\ttranslation\tsplit\n")
    f.write("a.mp3\tMerhaba\ttrain\nb.mp3\tGünaydın\tdev\nc.mp3\tTeşekkürler\ttrain\n")
  rows = covost.read_rows(covost_dir, "tr", "train")
  assert [r["translation"] for r in rows] == ["Merhaba", "Teşekkürler"]
  np.testing.assert_equal(len(covost.read_rows(covost_dir, "tr", "dev")), 1)
