"""Suite-wide settings (fail fast on silent broadcasting, partitionable RNG, XLA cache, no
network), the tiny demo corpus (built once per session and shared by tests/data, tests/tasks and
test_train) and the one-device reference run of tests/tiny_slam.py."""
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Most of the suite's time is XLA:CPU compiling tiny programs that then run for milliseconds.
# Two flags make compiling cheaper with identical losses (`python -m slam_jax.bench.compile_cost`,
# CPU seconds of the tiny model's init + first train step on a quiet 2-core Xeon):
#   XLA defaults                                    19.4 + 62.8  (a later step: 0.017 s)
#   no LLVM backend optimisation                      7.4 + 37.4  (0.037 s)
#   ... and the older loop emitters, not the MLIR     6.2 + 22.8  (0.048 s)
#   fusion emitters
# The steps run ~3x slower, which tests (a few steps each) do not notice.
# Read when JAX's CPU backend starts; subprocesses of tests inherit them.
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

# No Python call stacks in the HLO's op locations (a traced op's location otherwise carries 10
# frames): lowering the tiny model's step ~10% faster; error tracebacks are unchanged.
os.environ.setdefault("JAX_TRACEBACK_IN_LOCATIONS_LIMIT", "0")

from slam_jax.perf import collector  # noqa: E402
collector.tune()  # the suite traces hundreds of programs (slam_jax/perf/collector.py)
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


# Tests never use the network. A name lookup of, or a connection to, a host other than this
# machine fails, and the test that tried fails too (a library that swallows the error, such as
# Beam falling back from a runner it could not download, would otherwise hide the attempt).
# Subprocesses of tests are not covered.
_NETWORK_ATTEMPTS = []


def _guard_network() -> None:
  import socket  # pylint: disable=g-import-not-at-top
  local_names = {None, "", "localhost", "0.0.0.0", "::", "::1", socket.gethostname()}

  def is_local(host) -> bool:
    host = host.decode() if isinstance(host, bytes) else host
    return host in local_names or str(host).startswith("127.")

  def refuse(what):
    _NETWORK_ATTEMPTS.append(what)
    return OSError(f"tests must not use the network: {what}")

  getaddrinfo = socket.getaddrinfo

  def local_getaddrinfo(host, *args, **kwargs):
    if not is_local(host):
      raise refuse(f"name lookup of {host!r}")
    return getaddrinfo(host, *args, **kwargs)

  connect = socket.socket.connect

  def local_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
      raise refuse(f"connection to {address!r}")
    return connect(self, address)

  socket.getaddrinfo = local_getaddrinfo
  socket.socket.connect = local_connect


_guard_network()


@pytest.fixture(autouse=True)
def _no_network_attempts():
  start = len(_NETWORK_ATTEMPTS)
  yield
  assert not _NETWORK_ATTEMPTS[start:], (
      f"the test tried to use the network: {_NETWORK_ATTEMPTS[start:]}")


@pytest.fixture(autouse=True)
def _gin_bindings_end_with_their_test():
  """Clears gin's bindings after every test: a test that parses an experiment and does not clear
  it would otherwise configure whatever test runs next on its worker (an order-dependent failure
  the loadgroup schedule once produced)."""
  yield
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
  """The tiny demo corpus, built once per run: pytest-xdist workers share one copy (the first
  builds it under a file lock in their common base directory, the others wait and reuse it)."""
  import filelock  # pylint: disable=g-import-not-at-top
  from slam_jax.data.demo import corpus  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # .../pytest-N/ above each worker's popen-gwK/
  root = os.path.join(str(base), "slam_tiny_corpus")
  with filelock.FileLock(root + ".lock"):
    return corpus.ensure_built(root, seed=0, size_name="tiny")


@pytest.fixture()
def demo_tasks(tiny_corpus):
  """The demo tasks registered for the tiny corpus."""
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  from tasks import demo  # pylint: disable=g-import-not-at-top
  demo.register_demo_tasks(tiny_corpus, text_shuffle_buffer=32, speech_shuffle_buffer=8)
  return tiny_corpus


@pytest.fixture(scope="session")
def tiny_slam_one_device():
  """Two steps of our trainer on one device for tests/tiny_slam.py's model and batch: the
  reference of the sharding and t5x tests (they share an xdist group, so this runs once)."""
  import tiny_slam  # pylint: disable=g-import-not-at-top
  return tiny_slam.train()
