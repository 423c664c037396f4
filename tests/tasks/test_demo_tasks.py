"""The demo mixture through the converter: all three kinds, right shapes, packing."""
import numpy as np
import seqio

import tasks  # noqa: F401
from slam_jax import types
from slam_jax.data import pipeline

LENGTHS = pipeline.DEMO_FEATURE_LENGTHS


def _check_rows(batch, n):
  assert batch[types.SPEECH_FEATURES].shape == (n, LENGTHS["speech"], types.NUM_MEL_BINS)
  assert batch[types.SPEECH_FEATURES].dtype == np.float32
  for key in (types.TEXT_TOKENS, types.TEXT_SEGMENT_IDS, types.TEXT_POSITIONS):
    assert batch[key].shape == (n, LENGTHS["text"]) and batch[key].dtype == np.int32
  kind, mask, seg = batch[types.KIND], batch[types.SPEECH_MASK], batch[types.TEXT_SEGMENT_IDS]
  has_speech, has_text = mask.sum(1) > 0, seg.sum(1) > 0
  np.testing.assert_array_equal(has_speech, kind != types.KIND_TEXT)
  np.testing.assert_array_equal(has_text, kind != types.KIND_SPEECH)
  paired = kind == types.KIND_PAIRED
  assert set(np.unique(seg[paired])) <= {0, 1}
  # Text ends with EOS inside each segment; padding is 0 everywhere.
  tokens = batch[types.TEXT_TOKENS]
  assert (tokens[seg == 0] == 0).all() and (tokens[seg > 0] > 0).all()
  feats = batch[types.SPEECH_FEATURES]
  assert (feats[mask == 0] == 0).all() and np.isfinite(feats).all()


def test_slam_demo_yields_all_kinds(demo_tasks):
  assert isinstance(seqio.get_mixture_or_task("slam_demo"), seqio.Mixture)
  it = pipeline.make_train_iterator(mixture_or_task_name="slam_demo", batch_size=8,
                                    feature_lengths=LENGTHS, seed=0)
  batches = pipeline.take_batches(it, 3)
  for b in batches:
    _check_rows(b, 8)
  kinds = np.concatenate([b[types.KIND] for b in batches])
  assert set(kinds.tolist()) == {types.KIND_TEXT, types.KIND_SPEECH, types.KIND_PAIRED}


def test_packed_text_rows(demo_tasks):
  it = pipeline.make_train_iterator(mixture_or_task_name="slam_demo", batch_size=8,
                                    feature_lengths=LENGTHS, seed=0, pack=True, pack_window=16)
  batches = pipeline.take_batches(it, 4)
  for b in batches:
    _check_rows(b, 8)
  text_seg = np.concatenate([b[types.TEXT_SEGMENT_IDS][b[types.KIND] == types.KIND_TEXT]
                             for b in batches])
  assert text_seg.max() >= 2  # Several sentences per text row.


def test_validation_split_of_each_task(demo_tasks):
  for name in ("slam_demo_text", "slam_demo_speech", "slam_demo_paired"):
    ds = pipeline.get_model_dataset(name, feature_lengths=LENGTHS, batch_size=2,
                                    split="validation", shuffle=False, num_epochs=1, seed=None)
    _check_rows(next(ds.as_numpy_iterator()), 2)


def test_seqio_cache_tasks_main_caches_the_text_task(demo_tasks, tmp_path):
  """seqio's own Beam caching job runs on our text task; reading the cache gives the same rows
  (tokenised before the cache, length rules after it) as preprocessing on the fly."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "seqio_cache")
  result = subprocess.run(
      [sys.executable, "-m", "seqio.scripts.cache_tasks_main", "--module_import=tasks",
       "--tasks=slam_demo_text", f"--output_cache_dir={out}", "--min_shards=1",
       # Not seqio's default DirectRunner: it first fetches Beam's Prism runner from GitHub.
       "--pipeline_options=--runner=FnApiRunner"],
      env=dict(os.environ, SLAM_DATA_DIR=demo_tasks), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "prism" not in result.stderr.lower(), result.stderr[-3000:]
  assert os.path.exists(os.path.join(out, "slam_demo_text", "COMPLETED"))
  rows = {}
  for use_cached in (False, True):
    ds = pipeline.get_model_dataset("slam_demo_text", feature_lengths=LENGTHS, split="train",
                                    shuffle=False, num_epochs=1, seed=None, use_cached=use_cached,
                                    cache_dirs=[out] if use_cached else ())
    rows[use_cached] = sorted(tuple(r[types.TEXT_TOKENS].tolist()) for r in ds.as_numpy_iterator())
  assert len(rows[False]) > 10 and rows[True] == rows[False]
