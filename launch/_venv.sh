#!/usr/bin/env bash
# Sourced by the launch scripts: make sure ./.venv exists and holds slam_jax + its deps.
# Creates it from setup.py (pinned by launch/constraints.txt) when missing or incomplete.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLAM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
STAMP="$VENV/.slam_jax_installed"
if [[ ! -f "$STAMP" || "$ROOT/setup.py" -nt "$STAMP" || "$ROOT/launch/constraints.txt" -nt "$STAMP" ]]; then
  echo "[slam_jax] setting up $VENV (one time, a few minutes)..." >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/launch/constraints.txt" -e "$ROOT[test]" >&2
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
