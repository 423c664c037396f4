"""Data sources: the fixed low-resource subset of a prepared train split."""
import functools

import pytest
import tensorflow as tf

from slam_jax.data import prepare
from slam_jax.data import sources


def _ids(ds):
  return [ex["id"].decode() for ex in ds.as_numpy_iterator()]


def test_keep_fraction_is_the_same_subset_in_any_order():
  ids = [f"spk{i % 7}-ch-{i:04d}" for i in range(2000)]
  ds = tf.data.Dataset.from_tensor_slices({"id": ids})
  kept = _ids(sources.keep_fraction(ds, 0.1))
  shuffled = _ids(sources.keep_fraction(ds.shuffle(2000, seed=1), 0.1))
  assert sorted(kept) == sorted(shuffled) and len(set(kept)) == len(kept)
  assert 150 < len(kept) < 250  # ~10% of 2,000
  # Nested: a larger fraction keeps every id a smaller one keeps.
  assert set(kept) < set(_ids(sources.keep_fraction(ds, 0.3)))
  assert len(_ids(sources.keep_fraction(ds, 1.0))) == 2000
  with pytest.raises(ValueError, match="train fraction"):
    sources.keep_fraction(ds, 0.0)


def test_prepared_source_subsets_only_the_train_split(tiny_corpus):
  fraction = [1.0]
  source = sources.PreparedSpeechSource(
      functools.partial(prepare.file_pattern, f"{tiny_corpus}/prepared/paired"),
      train_fraction=lambda: fraction[0])
  full_train = _ids(source.get_dataset("train", shuffle=False))
  full_valid = _ids(source.get_dataset("validation", shuffle=False))
  fraction[0] = 0.5  # read when the dataset is built, as gin's value would be
  half = _ids(source.get_dataset("train", shuffle=True, seed=3))
  assert set(half) < set(full_train) and 0 < len(half) < len(full_train)
  assert _ids(source.get_dataset("validation", shuffle=False)) == full_valid
