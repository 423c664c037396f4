"""seqio data sources whose locations are resolved when a dataset is built, not at import.

Tasks register at `import tasks`, before gin is parsed and possibly before any data exist; these
sources call a function for their file pattern / TFDS data dir each time `get_dataset` runs.
"""

import collections.abc
import logging
from typing import Callable, Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from slam_jax.data import preprocessors


class LazyPatterns(collections.abc.Mapping):
  """{split: file pattern} whose values come from `pattern_fn(split)` at lookup time."""

  def __init__(self, pattern_fn: Callable[[str], str], splits: Sequence[str]):
    self._fn = pattern_fn
    self._splits = tuple(splits)

  def __getitem__(self, split: str) -> str:
    if split not in self._splits:
      raise KeyError(split)
    return self._fn(split)

  def __iter__(self):
    return iter(self._splits)

  def __len__(self):
    return len(self._splits)

  def __repr__(self):
    return f"LazyPatterns({self._fn.__name__ if hasattr(self._fn, '__name__') else self._fn})"


def _missing(pattern: str, hint: str) -> FileNotFoundError:
  return FileNotFoundError(f"no files match {pattern}: {hint}")


class PreparedSpeechSource(seqio.TFExampleDataSource):
  """TFRecords written by `python -m slam_jax.data.prepare` (schema: prepare.FEATURES)."""

  def __init__(self, pattern_fn: Callable[[str], str], splits: Sequence[str] = ("train",
                                                                              "validation"),
               hint: str = "run `python -m slam_jax.data.prepare --src DIR --out CACHE --split "
                           "SPLIT` (or build the demo corpus)",
               train_fraction: Optional[Callable[[], float]] = None):
    """`train_fraction()`, read when a dataset is built, keeps that share of the train split
    (`keep_fraction`); None keeps all of it."""
    self._hint = hint
    self._train_fraction = train_fraction
    super().__init__(split_to_filepattern=LazyPatterns(pattern_fn, splits),
                     feature_description=preprocessors.PREPARED_FEATURE_DESCRIPTION)

  def list_shards(self, split: str) -> Sequence[str]:
    files = super().list_shards(split)
    if not files:
      raise _missing(self._split_to_filepattern[split], self._hint)
    return files

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                  shard_info: Optional[seqio.ShardInfo] = None, **kwargs) -> tf.data.Dataset:
    ds = super().get_dataset(split, shuffle, seed, shard_info, **kwargs)
    fraction = self._train_fraction() if self._train_fraction and split == "train" else 1.0
    return keep_fraction(ds, fraction) if fraction < 1.0 else ds


def keep_fraction(ds: tf.data.Dataset, fraction: float, buckets: int = 10_000) -> tf.data.Dataset:
  """The examples whose `id` hashes below `fraction`: the same subset in any file order, epoch
  and process (a fixed low-resource split, like Libri-Light's 10 h set, without listing ids)."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"train fraction must be in (0, 1], got {fraction}")
  keep = int(round(fraction * buckets))
  return ds.filter(lambda ex: tf.strings.to_hash_bucket_fast(ex["id"], buckets) < keep)


class TextLinesSource(seqio.TextLineDataSource):
  """Lines of text files (plain text, or LibriSpeech *.trans.txt)."""

  def __init__(self, pattern_fn: Callable[[str], str], splits: Sequence[str] = ("train",
                                                                              "validation"),
               hint: str = "build the demo corpus or bind the text file patterns in gin"):
    self._hint = hint
    super().__init__(split_to_filepattern=LazyPatterns(pattern_fn, splits))

  def list_shards(self, split: str) -> Sequence[str]:
    files = super().list_shards(split)
    if not files:
      raise _missing(self._split_to_filepattern[split], self._hint)
    return files


class TfdsSource(seqio.TfdsDataSource):
  """A TFDS dataset that never downloads, reads from a lazily resolved data dir, and shards.

  Sharding: by files through TFDS when the split has at least `num_shards` files, else by
  examples (`Dataset.shard`). `num_input_examples` is None, which keeps seqio from caching
  audio-sized splits in memory.
  """

  def __init__(self, tfds_name: str, splits: Mapping[str, str],
               data_dir_fn: Callable[[], Optional[str]] = lambda: None):
    self._data_dir_fn = data_dir_fn
    super().__init__(tfds_name=tfds_name, splits=dict(splits), read_only=True)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def num_input_examples(self, split: str) -> Optional[int]:
    return None

  def _num_files(self, split: str) -> Optional[int]:
    try:
      return len(self.tfds_dataset.files(split))
    except Exception:  # pylint: disable=broad-except  # Unprepared or mocked dataset.
      return None

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                  shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: Optional[int] = 1) -> tf.data.Dataset:
    data_dir = self._data_dir_fn()
    if data_dir:
      self.tfds_dataset.override_data_dir(data_dir)
    if shard_info and shard_info.num_shards > 1:
      num_files = self._num_files(split)
      if num_files is None or num_files < shard_info.num_shards:
        logging.info("%s:%s sharding by examples (%s files < %d shards)", self.tfds_dataset.name,
                     split, num_files, shard_info.num_shards)
        ds = self.tfds_dataset.load(split, shuffle_files=shuffle, seed=seed)
        return ds.shard(shard_info.num_shards, shard_info.index)
    return self.tfds_dataset.load(split, shuffle_files=shuffle, seed=seed, shard_info=shard_info)
