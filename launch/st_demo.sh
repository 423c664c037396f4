#!/usr/bin/env bash
# Speech translation on the offline demo corpus: does SLAM pre-training help?
#
#   ./launch/st_demo.sh [PRETRAINED_MODEL_DIR]        # default runs/slam_demo_st_pretrain
#
# 1. builds the demo corpus in $SLAM_DATA_DIR (default ./data/demo) if absent, and adds its
#    speech-translation side (DIR/st/*.tsv, DIR/vocab/spm_target.model) if an older build lacks it;
# 2. pre-trains gin/experiments/slam_demo_tiny.gin into PRETRAINED_MODEL_DIR unless it holds
#    checkpoints already (reuse ./launch/local.sh's run directory to skip this);
# 3. fine-tunes gin/finetune/demo_st.gin (encoder + 2 x 96 Transformer decoder, beam 4) twice
#    with the same steps and settings: from the pre-trained encoder and from scratch;
# 4. prints BLEU / chrF on the held-out validation speakers for both (validation.json in each run).
# Env: STEPS (fine-tuning steps, default 600), OUT (default runs/st_demo), any further arguments
# go to both fine-tuning runs (e.g. --gin.BATCH_SIZE=8).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
set -euo pipefail
export SLAM_DATA_DIR="${SLAM_DATA_DIR:-$PWD/data/demo}"
PRETRAINED="${1:-runs/slam_demo_st_pretrain}"
shift || true
STEPS="${STEPS:-600}"
OUT="${OUT:-runs/st_demo}"
if [[ ! -f "$SLAM_DATA_DIR/manifest.json" ]]; then
  echo "[st_demo] building the demo corpus in $SLAM_DATA_DIR (offline, ~2 min)..."
  python -m slam_jax.data.demo --out "$SLAM_DATA_DIR"
elif [[ ! -f "$SLAM_DATA_DIR/st/train.tsv" ]]; then
  python -m slam_jax.data.demo.target_language --corpus "$SLAM_DATA_DIR"
fi
if [[ ! -d "$PRETRAINED/checkpoints" ]]; then
  echo "[st_demo] pre-training into $PRETRAINED"
  python -m slam_jax.train --gin_file=gin/experiments/slam_demo_tiny.gin \
    --gin.MODEL_DIR="'$PRETRAINED'"
fi
for mode in pretrained scratch; do
  if [[ -f "$OUT/$mode/validation.json" ]]; then continue; fi
  extra=()
  if [[ $mode == pretrained ]]; then extra=(--gin.PRETRAINED="'$PRETRAINED'"); fi
  echo "[st_demo] fine-tuning ST ($mode) into $OUT/$mode"
  python -m slam_jax.finetune --gin_file=gin/finetune/demo_st.gin \
    --gin.MODEL_DIR="'$OUT/$mode'" --gin.TRAIN_STEPS="$STEPS" "${extra[@]}" "$@"
done
python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"\n| demo ST (validation speakers) | BLEU | chrF | eval loss |")
print("|---|---|---|---|")
for mode in ("pretrained", "scratch"):
  v = json.load(open(os.path.join(out, mode, "validation.json")))["validation"][-1]
  print(f"| {mode} | {v['bleu']:.1f} | {v['chrf']:.1f} | {v['loss']:.3f} |")
PY
