"""The suite's CPU report (tests/cpu_profile.py) adds up what the workers wrote."""

import json

import pytest

import cpu_profile  # tests/cpu_profile.py


def test_summary_sums_tests_files_and_programs(tmp_path):
  rows = {"gw0": [{"test": "tests/a.py::x", "own": 2.0, "children": 10.0, "wall": 11.0},
                  {"test": "tests/a.py::y", "own": 1.5, "children": 0.0, "wall": 1.6}],
          "gw1": [{"test": "tests/b.py::z", "own": 4.0, "children": 0.5, "wall": 4.4}]}
  for worker, tests in rows.items():
    (tmp_path / f"tests_{worker}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tests))
  (tmp_path / "compiles_gw0.jsonl").write_text(
      "".join(json.dumps(c) + "\n" for c in [["tests/a.py::x", "jit_step", 3.0],
                                               ["tests/a.py::y", "jit_step", 2.0],
                                               ["tests/a.py::y", "jit_add", 0.25]]))
  report = cpu_profile.summarize(str(tmp_path), top=2)
  lines = report.splitlines()
  assert lines[0] == "3 tests, 18.0 CPU-s (10.5 in subprocesses); 3 XLA compiles, 5.2 s"
  # The costliest tests first, only `top` of them.
  assert lines[3].split() == ["12.0", "2.0", "10.0", "11.0", "tests/a.py::x"]
  assert lines[4].split()[-1] == "tests/b.py::z" and "tests/a.py::y" not in lines[4]
  assert "   13.5  tests/a.py" in report and "    4.5  tests/b.py" in report
  assert "    5.0      2  jit_step" in report and "    0.2      1  jit_add" in report


def test_summary_of_an_empty_directory_says_how_to_fill_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="-p cpu_profile"):
    cpu_profile.summarize(str(tmp_path))
