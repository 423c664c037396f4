#!/usr/bin/env bash
# Sourced by the launch scripts: make sure ./.venv exists and holds slam_jax + its deps.
# Creates it from setup.py (pinned by launch/constraints.txt) when missing or incomplete.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLAM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
STAMP="$VENV/.slam_jax_installed"
# Upstream commits of the packages installed --no-deps below (tested with the pins in constraints).
T5X_COMMIT=cc342d419ec3e3e9c4bf1df33c82330cafdc1e16
AIRIO_COMMIT=69897df7d9a427b947a9f7bb4164c7782b43e601
JESTIMATOR_COMMIT=326824a477feef6d92e6f44175000907a72899ca
# The offline wheelhouse beside this checkout (../shared/wheels), when there is one and none is set.
if [[ -z "${SLAM_WHEELHOUSE:-}" && -d "$ROOT/../shared/wheels" ]]; then
  SLAM_WHEELHOUSE="$(cd "$ROOT/../shared/wheels" && pwd)"
fi
if [[ ! -f "$STAMP" || "$ROOT/setup.py" -nt "$STAMP" || "$ROOT/launch/constraints.txt" -nt "$STAMP" ]]; then
  echo "[slam_jax] setting up $VENV (one time, a few minutes)..." >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/launch/constraints.txt" -e "$ROOT[test]" >&2
  # t5x (+ airio, jestimator), which the package index does not carry, with --no-deps (their
  # metadata asks for flax/optax/seqio from git HEAD): from the wheelhouse $SLAM_WHEELHOUSE when
  # set (offline machines; see docs/t5x.md), else from upstream at the pinned commits.
  if [[ -n "${SLAM_WHEELHOUSE:-}" ]]; then
    "$VENV/bin/python" -m pip install -q --no-deps "$SLAM_WHEELHOUSE"/t5x-*.whl \
      "$SLAM_WHEELHOUSE"/airio-*.whl "$SLAM_WHEELHOUSE"/jestimator-*.whl >&2
  else
    "$VENV/bin/python" -m pip install -q --no-deps \
      "t5x @ git+https://github.com/google-research/t5x@$T5X_COMMIT" \
      "airio @ git+https://github.com/google/airio@$AIRIO_COMMIT" \
      "jestimator @ git+https://github.com/google-research/jestimator@$JESTIMATOR_COMMIT" >&2
  fi
  if [[ -n "${SLAM_EXTRA_PIP:-}" ]]; then
    # Accelerator builds of jaxlib (jax[tpu], jax[cuda12]) on top of the CPU set.
    "$VENV/bin/python" -m pip install -q -c "$ROOT/launch/constraints.txt" "$SLAM_EXTRA_PIP" >&2
  fi
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# TensorFlow is only the input pipeline: keep it off accelerators and quiet.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
