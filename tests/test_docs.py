"""Every command in README.md and docs/*.md runs as written, as far as checking it is cheap.

Each ```bash block's commands are read (continuation lines joined, comments dropped). Launch
scripts must exist and be executable (tests/test_launch.py parses them); `python -m MODULE ARGS`
must name a module whose flags parse exactly as written, without running it; every gin file a
command or the text names must exist, and those a command passes must parse with its bindings.
A new `python -m` module in the docs needs a checker here (the test says so).
"""

import argparse
import glob
import os
import re
import shlex
from typing import Iterator, List, Tuple

import gin
import pytest

from slam_jax import train as train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                              for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def commands(doc: str) -> Iterator[Tuple[str, List[str]]]:
  """(doc, argv) for each command of the doc's ```bash blocks."""
  text = open(os.path.join(ROOT, doc)).read()
  for block in re.findall(r"```bash\n(.*?)```", text, re.S):
    for line in block.replace("\\\n", " ").splitlines():
      argv = shlex.split(line, comments=True)
      if argv:
        yield doc, argv


ALL_COMMANDS = [c for doc in DOCS for c in commands(doc)]


class _Parsed(Exception):
  pass


def _parse_only(main, argv):
  """Runs an argparse `main(argv)` up to its parse_args: flags checked, nothing executed."""
  original = argparse.ArgumentParser.parse_args

  def parse_and_stop(self, args=None, namespace=None):
    raise _Parsed(original(self, args, namespace))

  argparse.ArgumentParser.parse_args = parse_and_stop
  try:
    with pytest.raises(_Parsed):
      main(argv)
  finally:
    argparse.ArgumentParser.parse_args = original


def _parse_gin(gin_files, bindings, import_tasks=True):
  gin.clear_config()
  try:
    train_lib.parse_gin(gin_files, bindings, import_tasks=import_tasks)
  finally:
    gin.clear_config()


def _check_train(argv):
  gin_files, bindings, _ = train_lib.parse_flags(argv)
  _parse_gin(gin_files, bindings)


def _check_bench(argv):
  from slam_jax.bench import harness  # pylint: disable=g-import-not-at-top
  _, _, mode, gin_files, bindings = harness.parse_args(argv)
  if mode:
    bindings.append(f"slam_jax.bench.BenchConfig.mode = {mode!r}")
  _parse_gin(gin_files, bindings, import_tasks=False)


def _argparse_checker(module_name):
  def check(argv):
    import importlib  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(module_name)
    _parse_only(module.main, argv)
    for arg in argv:  # A gin file an argparse entry point reads must parse too.
      if arg.endswith(".gin"):
        _parse_gin([arg.split("=", 1)[-1]], [])
  return check


def _check_finetune(argv):
  from slam_jax.finetune import train as finetune_lib  # pylint: disable=g-import-not-at-top,unused-import
  _check_train(argv)


def _check_evaluate(argv):
  from slam_jax import evaluate  # pylint: disable=g-import-not-at-top
  from slam_jax.finetune import train as finetune_lib  # pylint: disable=g-import-not-at-top,unused-import
  gin_files, bindings, _ = evaluate.parse_flags(argv)
  _parse_gin(gin_files, bindings)


def _check_t5x_train(argv):
  """t5x's own flags: its gin files must exist (parsing them needs t5x's configs on the path)."""
  gin_files = [a.split("=", 1)[1] for a in argv if a.startswith("--gin_file=")]
  assert gin_files and all(os.path.exists(os.path.join(ROOT, f)) for f in gin_files), gin_files


def _check_prepare_beam(argv):
  from slam_jax.data import prepare_beam  # pylint: disable=g-import-not-at-top
  prepare_beam.parse_args(argv)  # Exits on a flag neither prepare nor Beam knows.


def _check_seqio_cache(argv):
  """seqio's absl flags parse (then are reset) and the modules it imports exist."""
  import importlib  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  importlib.import_module("seqio.scripts.cache_tasks_main")
  try:
    flags.FLAGS(["cache_tasks_main"] + argv)
    for module in flags.FLAGS.module_import:
      importlib.import_module(module)
  finally:
    flags.FLAGS.unparse_flags()


CHECKERS = {
    "slam_jax.finetune": _check_finetune,
    "slam_jax.evaluate": _check_evaluate,
    "slam_jax.convert": _argparse_checker("slam_jax.convert"),
    "slam_jax.embed": _argparse_checker("slam_jax.embed"),
    "t5x.train": _check_t5x_train,
    "t5x.eval": _check_t5x_train,
    "t5x.infer": _check_t5x_train,
    "slam_jax.train": _check_train,
    "slam_jax.bench": _check_bench,
    "slam_jax.bench.compile_cost": _argparse_checker("slam_jax.bench.compile_cost"),
    "slam_jax.models.summary": _argparse_checker("slam_jax.models.summary"),
    "slam_jax.data.prepare": _argparse_checker("slam_jax.data.prepare"),
    "slam_jax.data.prepare_beam": _check_prepare_beam,
    "seqio.scripts.cache_tasks_main": _check_seqio_cache,
    "slam_jax.data.vocab": _argparse_checker("slam_jax.data.vocab"),
    "slam_jax.data.bench": _argparse_checker("slam_jax.data.bench"),
    "slam_jax.data.demo": _argparse_checker("slam_jax.data.demo.corpus"),
    "slam_jax.data.corpus": _argparse_checker("slam_jax.data.corpus"),
}


def _script_and_args(argv):
  """The ./launch or .ci script a shell command runs (after env/srun prefixes), and its args."""
  for i, arg in enumerate(argv):
    if arg.startswith("./launch/") or arg.startswith(".ci/"):
      return arg, argv[i + 1:]
  return None, None


def test_docs_have_commands():
  # The README's commands are found (else this file would check nothing).
  readme = [argv for doc, argv in ALL_COMMANDS if doc == "README.md"]
  assert ["./launch/local.sh"] in readme and ["./launch/test.sh"] in readme
  assert sum(argv[:3] == ["python", "-m", "slam_jax.bench"] for _, argv in ALL_COMMANDS) >= 3


@pytest.mark.parametrize("doc,argv", ALL_COMMANDS, ids=lambda v: " ".join(v)[:60]
                         if isinstance(v, list) else v)
def test_command_runs_as_written(doc, argv):
  while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):  # VAR=value prefixes
    argv = argv[1:]
  script, script_args = _script_and_args(argv)
  if script is not None:
    path = os.path.join(ROOT, script)
    assert os.access(path, os.X_OK), f"{doc}: {script} is missing or not executable"
    if script in ("./launch/tpu_pod.sh", "./launch/gpu.sh"):  # GIN_FILE, then train's flags.
      _check_train([f"--gin_file={script_args[0]}"] + script_args[1:])
    elif script == "./launch/local.sh" and script_args:  # Train's flags after the main job's.
      _check_train(["--gin_file=gin/experiments/slam_demo_tiny.gin"] + script_args)
    return
  if argv[:2] == ["python", "-m"]:
    assert argv[2] in CHECKERS, (
        f"{doc}: add a checker for `python -m {argv[2]}` to tests/test_docs.py::CHECKERS")
    CHECKERS[argv[2]](argv[3:])
    return
  assert argv[0] in ("pip", "srun"), f"{doc}: unchecked command {' '.join(argv)}"


@pytest.mark.parametrize("doc", DOCS)
def test_gin_files_named_exist(doc):
  text = open(os.path.join(ROOT, doc)).read()
  names = set(re.findall(r"gin/[\w/]+\.gin", text))
  # A bare `name.gin` must exist in some gin/ folder (experiments, finetune, bench, ...).
  names |= {n for n in re.findall(r"`(\w+\.gin)`", text)
            if not glob.glob(os.path.join(ROOT, "gin", "**", n), recursive=True)}
  missing = sorted(n for n in names if "<" not in n and not os.path.exists(os.path.join(ROOT, n)))
  assert not missing, f"{doc} names gin files that do not exist: {missing}"
