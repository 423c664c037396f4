"""Suite-wide settings (fail fast on silent broadcasting, partitionable RNG, XLA cache) and the
tiny demo corpus, built once per session and shared by tests/data, tests/tasks and test_train."""
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Most of the suite's time is XLA:CPU compiling tiny programs that then run for milliseconds.
# Without LLVM's backend optimisation the same HLO compiles in about half the CPU time (the tiny
# SLAM init + loss-and-gradient: 58 -> 29 CPU-s) and runs ~15% slower, with identical results.
# Read when JAX's CPU backend starts; subprocesses of tests inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_threefry_partitionable", True)

# Tests compile the same tiny train step many times (and in subprocesses): share XLA's
# persistent compilation cache (content-addressed: keyed by program, options and jax version).
_CACHE_DIR = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"slam_jax_test_xla_cache_{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
  from slam_jax.data.demo import corpus  # pylint: disable=g-import-not-at-top
  root = os.path.join(str(tmp_path_factory.getbasetemp()), "slam_tiny_corpus")
  return corpus.ensure_built(root, seed=0, size_name="tiny")


@pytest.fixture()
def demo_tasks(tiny_corpus):
  """The demo tasks registered for the tiny corpus."""
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from tasks import demo  # pylint: disable=g-import-not-at-top
  demo.register_demo_tasks(tiny_corpus, text_shuffle_buffer=32, speech_shuffle_buffer=8)
  return tiny_corpus
