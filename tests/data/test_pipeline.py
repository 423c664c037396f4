"""Train iterators: shapes, ShardInfo, determinism, and resuming at the same next batch."""
import os

import numpy as np
import pytest
import seqio

from slam_jax import types
from slam_jax.data import layout
from slam_jax.data import pipeline

LENGTHS = pipeline.DEMO_FEATURE_LENGTHS


def _iterator(**kwargs):
  args = dict(mixture_or_task_name="slam_demo", batch_size=4, feature_lengths=LENGTHS, seed=3)
  args.update(kwargs)
  return pipeline.make_train_iterator(**args)


def _assert_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_by_skipping_and_from_checkpoint(demo_tasks, tmp_path):
  it = _iterator()
  first = pipeline.take_batches(it, 2)
  path = str(tmp_path / "data" / "process_0")
  it.save(path)
  rest = pipeline.take_batches(it, 3)
  assert it.state()["batches_consumed"] == 5
  for b in first + rest:
    assert b[types.SPEECH_FEATURES].shape == (4, LENGTHS["speech"], types.NUM_MEL_BINS)
    assert b[types.TEXT_TOKENS].shape == (4, LENGTHS["text"])
  # Fresh pipeline, same seed: identical stream.
  _assert_equal(next(_iterator()), first[0])
  # Skipping: the resumed iterator's next batch is the one the first run saw next.
  skipped = _iterator(start_batch=3)
  _assert_equal(next(skipped), rest[1])
  assert skipped.batches_consumed == 4
  # tf.data iterator checkpoint.
  restored = _iterator(start_batch=2, checkpoint_path=path)
  _assert_equal(next(restored), rest[0])
  with pytest.raises(ValueError, match="resumes at 4"):
    _iterator(start_batch=4, checkpoint_path=path)


def test_shards_are_disjoint_and_complete(demo_tasks):
  task = seqio.get_mixture_or_task("slam_demo_paired")

  def ids(shard_info):
    ds = task.get_dataset(LENGTHS, split="train", shuffle=False, num_epochs=1,
                          shard_info=shard_info)
    return [x["id"].decode() for x in ds.as_numpy_iterator()]

  everything = [u.id for u in layout.scan(os.path.join(demo_tasks, "paired", "train")).utterances]
  for num_shards in (2, 3):  # 2 = by file (2 shards on disk), 3 = by example.
    parts = [ids(seqio.ShardInfo(i, num_shards)) for i in range(num_shards)]
    assert sorted(sum(parts, [])) == sorted(everything) and all(parts)


def test_state_from_another_pipeline_is_refused_and_the_iterator_still_skips(demo_tasks, tmp_path):
  """A state saved by another input pipeline (e.g. an older slam_jax whose graph differs) is
  refused with a message naming the file, and the iterator is not left half-restored."""
  it = _iterator()
  taken = pipeline.take_batches(it, 2)
  path = str(tmp_path / "other")
  it.save(path)
  expected = next(_iterator(mixture_or_task_name="slam_demo_stage1", start_batch=2))
  build = lambda: pipeline.get_model_dataset("slam_demo_stage1", feature_lengths=LENGTHS,
                                             batch_size=4, seed=3)
  changed = pipeline.DataIterator(build(), start_batch=2, rebuild=build)  # Another graph.
  with pytest.raises(pipeline.IteratorStateMismatch, match="other.*does not fit"):
    changed.restore(path)
  _assert_equal(next(changed), expected)  # Skipped to batch 2 instead.
  assert changed.batches_consumed == 3 and len(taken) == 2
