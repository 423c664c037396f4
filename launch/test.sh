#!/usr/bin/env bash
# The test command: sets up .venv if missing, then runs the whole suite.
# Extra arguments go to pytest (e.g. ./launch/test.sh tests/models -k conformer).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
set +e
python -m pytest -q "$@"
rc=$?
# pytest exits 5 when no test was collected: that is a failure for CI, not a pass.
if [[ $rc -eq 5 ]]; then echo "[slam_jax] no tests collected" >&2; exit 1; fi
exit $rc
