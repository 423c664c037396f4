"""`import tasks` registers everything without data; missing data fails clearly; lazy dirs."""
import gin
import pytest
import seqio

import tasks
from slam_jax import types
from tasks import demo

ALL_TASKS = ("slam_demo_text", "slam_demo_speech", "slam_demo_paired", "librispeech_paired",
             "librispeech_speech", "librilight_speech", "librispeech_prepared_paired",
             "librispeech_prepared_speech", "c4_en_text", "text_files")
ALL_MIXTURES = ("slam_demo", "slam_demo_stage1", "slam_pretrain", "slam_pretrain_stage1")


@pytest.fixture()
def gin_config():
  gin.clear_config()
  yield gin
  gin.clear_config()
  demo.register_demo_tasks()


def test_everything_is_registered():
  for name in ALL_TASKS + ALL_MIXTURES:
    provider = seqio.get_mixture_or_task(name)
    assert set(provider.output_features) == {types.TASK_SPEECH, types.TASK_TEXT, types.TASK_KIND}
  assert {t.name for t in seqio.get_mixture_or_task("slam_demo").tasks} == {
      "slam_demo_text", "slam_demo_speech", "slam_demo_paired"}
  assert isinstance(seqio.get_mixture_or_task("slam_demo").output_features["speech"],
                    seqio.ContinuousFeature)


def test_missing_data_names_the_fix(tmp_path, gin_config):
  demo.register_demo_tasks(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="slam_jax.data.demo"):
    seqio.get_mixture_or_task("slam_demo_speech").get_dataset({"speech": 10, "text": 4})


def test_gin_data_dir_is_read_when_the_dataset_is_built(tiny_corpus, gin_config):
  demo.register_demo_tasks()  # Lazy: no directory fixed at registration.
  gin_config.bind_parameter("demo_data_dir.data_dir", tiny_corpus)
  gin_config.bind_parameter("demo_mixture_rates.speech", 0.0)
  gin_config.bind_parameter("demo_mixture_rates.paired", 0.0)
  ds = seqio.get_mixture_or_task("slam_demo").get_dataset({"speech": 600, "text": 64}, seed=0)
  kinds = [int(x["kind"][0]) for x in ds.take(6).as_numpy_iterator()]
  assert kinds == [types.KIND_TEXT] * 6
  vocab = seqio.get_mixture_or_task("slam_demo_text").output_features["text"].vocabulary
  assert vocab.sentencepiece_model_file.startswith(tiny_corpus)
  assert tasks.common.demo_data_dir() == tiny_corpus
