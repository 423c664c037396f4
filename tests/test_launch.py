"""The launch scripts the README documents exist, are executable and parse as bash."""

import os
import subprocess

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
