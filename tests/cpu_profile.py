"""Where the suite's CPU goes, per test: a pytest plugin and its report (docs/performance.md).

  rm -rf /tmp/slam_jax_test_xla_cache_$(id -u) /tmp/slam_jax_cpu_profile  # a cold run
  PYTHONPATH=tests ./launch/test.sh -p cpu_profile
  python tests/cpu_profile.py [/tmp/slam_jax_cpu_profile] [--top 40]

Each worker appends one JSON line per test to DIR/tests_<worker>.jsonl: its CPU seconds (user +
system) in the worker itself and in the subprocesses it waited for (`resource.getrusage`, so a
subprocess counts once it has exited), and its wall seconds. Each XLA compile goes to
DIR/compiles_<worker>.jsonl as [test, program name, wall seconds]. Wall time on a shared 2-core
machine moves with whatever else runs; CPU seconds move less, which is why the suite's time is
tracked as a sum of CPU (6 minutes on 2 cores is at most 720 CPU-s).
"""

import argparse
import collections
import glob
import json
import os
import resource
import sys
import time
from typing import Dict, List, Tuple

import pytest

DEFAULT_DIR = "/tmp/slam_jax_cpu_profile"
_current = {"test": "<collection>"}
_compiles: List[Tuple[str, str, float]] = []


def _cpu() -> Tuple[float, float]:
  own = resource.getrusage(resource.RUSAGE_SELF)
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _path(kind: str) -> str:
  directory = os.environ.get("SLAM_CPU_PROFILE_DIR", DEFAULT_DIR)
  os.makedirs(directory, exist_ok=True)
  return os.path.join(directory, f"{kind}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.jsonl")


def pytest_configure(config):
  """Wraps XLA's compile entry point (a private one: there is no public per-compile hook that
  names the program) to record each compile's program and wall time."""
  del config
  from jax._src import compiler  # pylint: disable=g-import-not-at-top
  from jax._src.lib.mlir import ir  # pylint: disable=g-import-not-at-top
  compile_and_load = compiler.backend_compile_and_load

  def timed(backend, module, *args, **kwargs):
    start = time.perf_counter()
    try:
      return compile_and_load(backend, module, *args, **kwargs)
    finally:
      name = ir.StringAttr(module.operation.attributes["sym_name"]).value
      _compiles.append((_current["test"], name, time.perf_counter() - start))

  compiler.backend_compile_and_load = timed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  del nextitem
  _current["test"] = item.nodeid
  own0, children0 = _cpu()
  start = time.time()
  yield
  own1, children1 = _cpu()
  with open(_path("tests"), "a") as f:
    f.write(json.dumps({"test": item.nodeid, "own": own1 - own0, "children": children1 - children0,
                        "wall": time.time() - start}) + "\n")


def pytest_unconfigure(config):
  del config
  with open(_path("compiles"), "a") as f:
    for row in _compiles:
      f.write(json.dumps(row) + "\n")


def summarize(directory: str, top: int = 40) -> str:
  """The report: totals, per-worker busy time, the costliest tests, files and compiled programs."""
  tests = [json.loads(line) for path in sorted(glob.glob(os.path.join(directory, "tests_*.jsonl")))
           for line in open(path)]
  compiles = [json.loads(line)
              for path in sorted(glob.glob(os.path.join(directory, "compiles_*.jsonl")))
              for line in open(path)]
  if not tests:
    raise FileNotFoundError(f"no tests_*.jsonl under {directory}: run the suite with "
                            "`PYTHONPATH=tests ./launch/test.sh -p cpu_profile` first.")
  cpu = lambda t: t["own"] + t["children"]
  lines = [f"{len(tests)} tests, {sum(map(cpu, tests)):.1f} CPU-s "
           f"({sum(t['children'] for t in tests):.1f} in subprocesses); "
           f"{len(compiles)} XLA compiles, {sum(c[2] for c in compiles):.1f} s"]
  lines.append(f"\n{'CPU-s':>7} {'own':>7} {'subproc':>7} {'wall':>7}  test")
  for t in sorted(tests, key=cpu, reverse=True)[:top]:
    lines.append(f"{cpu(t):7.1f} {t['own']:7.1f} {t['children']:7.1f} {t['wall']:7.1f}  "
                 f"{t['test']}")
  by_file: Dict[str, float] = collections.Counter()
  for t in tests:
    by_file[t["test"].split("::")[0]] += cpu(t)
  lines.append(f"\n{'CPU-s':>7}  file")
  lines += [f"{v:7.1f}  {k}" for k, v in sorted(by_file.items(), key=lambda kv: -kv[1])[:top]]
  by_program: Dict[str, List[float]] = collections.defaultdict(lambda: [0, 0.0])
  for _, name, seconds in compiles:
    by_program[name][0] += 1
    by_program[name][1] += seconds
  lines.append(f"\n{'s':>7} {'count':>6}  compiled program")
  lines += [f"{s:7.1f} {n:6d}  {name}"
            for name, (n, s) in sorted(by_program.items(), key=lambda kv: -kv[1][1])[:top]]
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("directory", nargs="?", default=DEFAULT_DIR)
  parser.add_argument("--top", type=int, default=40)
  args = parser.parse_args(sys.argv[1:])
  print(summarize(args.directory, args.top))
