#!/usr/bin/env bash
# The test command: sets up .venv if missing, then runs the whole suite.
# Extra arguments go to pytest (e.g. ./launch/test.sh tests/models -k conformer; -n 0 runs it in
# this one process). The suite is spread over min(cores, 4) pytest-xdist workers (each holds its
# own JAX/TensorFlow, ~3-5 GB at the end); SLAM_TEST_WORKERS overrides the count. Tests marked
# with one xdist_group run on one worker, so they share its compiled programs and fixtures.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
workers="${SLAM_TEST_WORKERS:-$(python -c 'import os; print(min(len(os.sched_getaffinity(0)), 4))')}"
set +e
python -m pytest -q -n "$workers" --dist loadgroup "$@"
rc=$?
# pytest exits 5 when no test was collected: that is a failure for CI, not a pass.
if [[ $rc -eq 5 ]]; then echo "[slam_jax] no tests collected" >&2; exit 1; fi
exit $rc
