#!/usr/bin/env bash
# Does pre-training help? Pre-train on the demo corpus (or reuse a checkpoint), fine-tune CTC ASR
# and the who-acts classifier from it and from scratch with identical settings, run speech<->text
# retrieval on the pre-trained encoder, print one table. CPU only, offline; see docs/finetuning.md.
#
#   ./launch/downstream_demo.sh [PRETRAINED_MODEL_DIR [FINE-TUNING GIN FLAGS...]]
#
# Further arguments go to every fine-tuning run, e.g. a linear probe (encoder frozen throughout):
#   ./launch/downstream_demo.sh runs/demo600 --gin.FREEZE_ENCODER_STEPS=1000000
# Budget knobs (environment): PRETRAIN_STEPS (1500: the shortest pre-training measured to help
# CTC; ~50 min on 2 CPU cores, 600 steps do not help), CTC_STEPS (400), CLS_STEPS (200),
# RETRIEVAL_PAIRS (50; 0 skips retrieval), OUT (runs/downstream_demo-<time>). With a given
# checkpoint the rest takes ~14 min on 2 cores (docs/finetuning.md).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
export SLAM_DATA_DIR="${SLAM_DATA_DIR:-$PWD/data/demo}"
if [[ ! -f "$SLAM_DATA_DIR/manifest.json" ]]; then
  echo "[slam_jax] building the demo corpus in $SLAM_DATA_DIR (offline, ~2 min)..."
  python -m slam_jax.data.demo --out "$SLAM_DATA_DIR"
fi
OUT="${OUT:-runs/downstream_demo-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
START=$(date +%s)
PRE="${1:-}"
shift || true
if [[ -z "$PRE" ]]; then
  PRE="$OUT/pretrain"
  echo "[downstream_demo] pre-training ${PRETRAIN_STEPS:-1500} steps into $PRE"
  python -m slam_jax.train --gin_file=gin/experiments/slam_demo_tiny.gin \
    --gin.MODEL_DIR="'$PRE'" --gin.TRAIN_STEPS="${PRETRAIN_STEPS:-1500}" | tail -n 25
fi
for task in ctc cls; do
  steps=$([[ $task == ctc ]] && echo "${CTC_STEPS:-400}" || echo "${CLS_STEPS:-200}")
  for init in pretrained scratch; do
    echo "[downstream_demo] fine-tuning $task ($init, $steps steps)"
    extra=()
    [[ $init == pretrained ]] && extra=(--gin.PRETRAINED="'$PRE'")
    python -m slam_jax.finetune --gin_file="gin/finetune/demo_$task.gin" \
      --gin.MODEL_DIR="'$OUT/$task-$init'" --gin.TRAIN_STEPS="$steps" "${extra[@]}" "$@" \
      | grep -E "^\[finetune\]|^step" | tail -n 6
  done
done
if [[ "${RETRIEVAL_PAIRS:-50}" != 0 ]]; then  # 0: no retrieval (it needs no fine-tuning)
  echo "[downstream_demo] retrieval on ${RETRIEVAL_PAIRS:-50} held-out pairs"
  python -m slam_jax.finetune.retrieval --gin_file=gin/experiments/slam_demo_tiny.gin \
    --gin.MODEL_DIR="'$PRE'" --checkpoint="$PRE" --num_pairs="${RETRIEVAL_PAIRS:-50}" \
    --output="$OUT/retrieval.json"
fi
echo
echo "[downstream_demo] $OUT, $(( ($(date +%s) - START) / 60 )) min"
python -m slam_jax.finetune.report "$OUT" | tee "$OUT/table.md"
