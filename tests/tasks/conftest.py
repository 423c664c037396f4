"""The tiny demo corpus, built once per session (tests/data and tests/tasks share the build)."""
import os

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
  from slam_jax.data import corpus  # pylint: disable=g-import-not-at-top
  root = os.path.join(str(tmp_path_factory.getbasetemp()), "slam_tiny_corpus")
  return corpus.ensure_built(root, seed=0, size_name="tiny")


@pytest.fixture()
def demo_tasks(tiny_corpus):
  """The demo tasks registered for the tiny corpus."""
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from tasks import demo  # pylint: disable=g-import-not-at-top
  demo.register_demo_tasks(tiny_corpus, text_shuffle_buffer=32, speech_shuffle_buffer=8)
  return tiny_corpus
