"""TFDS-backed tasks (LibriSpeech, C4) on `tfds.testing.mock_data`, and the paper mixture."""
import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

import tasks  # noqa: F401
from slam_jax import types
from slam_jax.data import pipeline

LENGTHS = {"speech": 300, "text": 48}
_WORDS = "the dog ran near westburg and a brave cat sang to the old river".split()


def _mock_as_dataset(self, *args, **kwargs):
  """Realistic stand-ins: 1-3 s of int16 tones for librispeech, sentences for c4."""
  del args, kwargs
  def librispeech(i):
    n = 16000 * (1 + i % 3)
    t = np.arange(n) / 16000
    audio = (3000 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.int16)
    return {"speech": audio, "text": " ".join(_WORDS[i % 5:i % 5 + 6]).upper(),
            "speaker_id": np.int64(i), "chapter_id": np.int64(7), "id": f"{i}-7-{i:04d}"}

  def c4(i):
    return {"text": " ".join(_WORDS[i % 7:]).capitalize() + ".", "url": f"http://x/{i}",
            "timestamp": "2019", "content-type": "text/plain", "content-length": "10"}
  make = librispeech if self.name == "librispeech" else c4
  return tf.data.Dataset.from_generator(
      lambda: (make(i) for i in range(10)),
      output_signature=tf.nest.map_structure(
          lambda s: tf.TensorSpec(s.shape, s.dtype), self.info.features.get_tensor_info()))


@pytest.fixture()
def mocked(tiny_corpus):
  gin.clear_config()
  gin.bind_parameter("vocabulary_path.path", f"{tiny_corpus}/vocab/spm.model")
  with tfds.testing.mock_data(as_dataset_fn=_mock_as_dataset):
    yield tiny_corpus
  gin.clear_config()


@pytest.mark.parametrize("name,kind", [("librispeech_paired", types.KIND_PAIRED),
                                       ("librispeech_speech", types.KIND_SPEECH),
                                       ("c4_en_text", types.KIND_TEXT)])
def test_task_features(mocked, name, kind):
  ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split="train", shuffle=False,
                                                   num_epochs=1)
  examples = list(ds.as_numpy_iterator())
  assert len(examples) == 10 and all(x["kind"].tolist() == [kind] for x in examples)
  for i, x in enumerate(examples):
    frames = x["speech"].shape[0]
    if kind == types.KIND_TEXT:
      assert frames == 0 and x["text"][-1] == 1
    else:
      assert x["speech"].shape[1] == types.NUM_MEL_BINS and 98 <= frames <= 298
    assert (x["text"].shape[0] > 1) == (kind != types.KIND_SPEECH)


def test_shard_info_on_tfds(mocked):
  task = seqio.get_mixture_or_task("librispeech_paired")
  ids = [[x["id"] for x in task.get_dataset(LENGTHS, shuffle=False, num_epochs=1,
                                            shard_info=seqio.ShardInfo(i, 2)).as_numpy_iterator()]
         for i in range(2)]
  assert len(ids[0]) == len(ids[1]) == 5 and not set(ids[0]) & set(ids[1])


@pytest.fixture()
def small_buffers():
  """The pre-training tasks with 8-example shuffle buffers (the data here is tiny)."""
  names = ("c4_en_text", "librilight_speech", "librispeech_paired")
  for name in names:
    task = seqio.TaskRegistry.get(name)
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add_provider(name, task.replace(shuffle_buffer_size=8))
  tasks.mixtures.register_pretrain_mixtures()
  yield
  tasks.text.register_text_tasks()
  tasks.librispeech.register_librispeech_tasks()
  tasks.librilight.register_prepared_task("librilight_speech",
                                          tasks.librilight.librilight_cache_dir)
  tasks.mixtures.register_pretrain_mixtures()


def test_pretrain_mixture_batches(mocked, small_buffers):
  gin.bind_parameter("librilight_cache_dir.path", f"{mocked}/prepared/speech")
  it = pipeline.make_train_iterator(mixture_or_task_name="slam_pretrain", batch_size=6,
                                    feature_lengths=LENGTHS, seed=0)
  kinds = np.concatenate([next(it)[types.KIND] for _ in range(3)])
  assert set(kinds.tolist()) == {types.KIND_TEXT, types.KIND_SPEECH, types.KIND_PAIRED}
