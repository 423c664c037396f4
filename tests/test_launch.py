"""The launch scripts the README documents exist, are executable and parse as bash."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["launch/local.sh", "launch/test.sh", "launch/tpu_pod.sh", "launch/gpu.sh", ".ci/run",
           "launch/downstream_demo.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_and_parses(script):
  path = os.path.join(ROOT, script)
  assert os.access(path, os.X_OK), f"{script} is not executable (chmod +x)"
  subprocess.run(["bash", "-n", path], check=True)


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
  readme = open(os.path.join(ROOT, "README.md")).read()
  assert "./launch/local.sh" in readme and "./launch/test.sh" in readme
  assert "./launch/test.sh" in open(os.path.join(ROOT, ".ci", "run")).read()


def test_venv_installs_t5x_from_the_wheelhouse_or_pinned_commits():
  venv = open(os.path.join(ROOT, "launch", "_venv.sh")).read()
  assert '"$SLAM_WHEELHOUSE"/t5x-*.whl' in venv and "--no-deps" in venv
  for repo in ("google-research/t5x@$T5X_COMMIT", "google/airio@$AIRIO_COMMIT",
               "google-research/jestimator@$JESTIMATOR_COMMIT"):
    assert repo in venv
  assert "T5X_COMMIT=cc342d419ec3e3e9c4bf1df33c82330cafdc1e16" in venv
  ci = open(os.path.join(ROOT, ".ci", "run")).read()
  assert "SLAM_WHEELHOUSE" in ci and ci.rstrip().endswith("./launch/test.sh")


def test_loadgroup_keeps_an_xdist_group_on_one_worker(tmp_path):
  """launch/test.sh's `--dist loadgroup` runs each xdist_group on one worker, so a session fixture
  or compiled step its tests share is built once. pytest 9.2 broke this silently with
  pytest-xdist 3.8 (pytest-xdist issue #1386: every test scheduled alone), hence setup.py's pin."""
  (tmp_path / "test_toy.py").write_text(
      "import pytest, time\n"
      "G = pytest.mark.xdist_group('g')\n"
      # Grouped tests first: scheduled one by one, the first four would go two to each worker.
      + "".join(f"@G\ndef test_g{i}(): time.sleep(0.05)\n" for i in range(4))
      + "".join(f"def test_free{i}(): time.sleep(0.05)\n" for i in range(4)))
  result = subprocess.run(
      [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
       "-v", "--rootdir", str(tmp_path), str(tmp_path)],
      cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout[-3000:]
  workers = {line.split("]")[0].strip("[") for line in result.stdout.splitlines()
             if "PASSED" in line and "::test_g" in line}
  assert len(workers) == 1, result.stdout[-3000:]
  assert result.stdout.count("PASSED") == 8, result.stdout[-3000:]
