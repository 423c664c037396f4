#!/usr/bin/env bash
# The main job: a real small SLAM pre-training run on this machine's CPU, fully offline.
#
#   ./launch/local.sh [--gin.KEY=VALUE ...]
#
# 1. creates ./.venv from setup.py if it is missing (one time, a few minutes);
# 2. builds the demo corpus in $SLAM_DATA_DIR (default ./data/demo) if absent: eSpeak NG speech,
#    grammar-generated text, a SentencePiece vocabulary and TFRecords (about 2 minutes);
# 3. pre-trains gin/experiments/slam_demo_tiny.gin with all four objectives (SpanBERT MLM,
#    w2v-BERT, TLM, STM), printing progress, into runs/slam_demo_tiny-<time>, and ends with a
#    summary of final vs first-step losses and accuracies and the checkpoint path.
# Resume an interrupted run: ./launch/local.sh --gin.MODEL_DIR="'runs/slam_demo_tiny-...'" --resume
# Exit status: 0 finished; 75 preempted (SIGTERM/SIGINT; a checkpoint was saved: relaunch with
# --resume, e.g. SLURM --requeue / Kubernetes restartPolicy: OnFailure); 1 error. See
# docs/failure_modes.md (also: one trainer per MODEL_DIR, --resume_step=N after divergence).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
export SLAM_DATA_DIR="${SLAM_DATA_DIR:-$PWD/data/demo}"
if [[ ! -f "$SLAM_DATA_DIR/manifest.json" ]]; then
  echo "[slam_jax] building the demo corpus in $SLAM_DATA_DIR (offline, ~2 min)..."
  python -m slam_jax.data.demo --out "$SLAM_DATA_DIR"
fi
MODEL_DIR="runs/slam_demo_tiny-$(date +%Y%m%d-%H%M%S)"
echo "[slam_jax] training into $MODEL_DIR"
exec python -m slam_jax.train --gin_file=gin/experiments/slam_demo_tiny.gin \
  --gin.MODEL_DIR="'$MODEL_DIR'" "$@"
