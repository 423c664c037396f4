#!/usr/bin/env bash
# Launch a slam_jax experiment on every host of a Cloud TPU VM pod slice.
#
#   TPU_NAME=my-v4-64 ZONE=us-central2-b ./launch/tpu_pod.sh gin/experiments/slam.gin \
#       --gin.MODEL_DIR="'gs://my-bucket/slam/run1'" [--resume]
#
# Every host runs the same command (JAX is SPMD across processes); jax.distributed.initialize()
# discovers the pod by itself (SLAM_DISTRIBUTED=auto). Each host reads its own shard of the data
# (seqio.ShardInfo from jax.process_index()). MODEL_DIR and the data should be on GCS so that all
# hosts see them. The repo is copied to each host and its .venv is created there on first run.
# Exit status: 0 finished; 75 preempted (SIGTERM/SIGINT; a checkpoint was saved: relaunch with
# --resume, e.g. SLURM --requeue / Kubernetes restartPolicy: OnFailure); 1 error. See
# docs/failure_modes.md (also: one trainer per MODEL_DIR, --resume_step=N after divergence).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
GIN_FILE=${1:?usage: tpu_pod.sh GIN_FILE [--gin.KEY=VALUE ...] [--resume]}
shift
REMOTE_DIR=${REMOTE_DIR:-slam_jax}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Ship the working tree (without venv, data, runs) to every worker.
tar -C "$ROOT" --exclude=.venv --exclude=data --exclude=runs --exclude=.git -czf /tmp/slam_jax_src.tgz .
gcloud compute tpus tpu-vm scp /tmp/slam_jax_src.tgz "$TPU_NAME":/tmp/ --worker=all --zone="$ZONE" $PROJECT_FLAG
ARGS=$(printf "%q " "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all --zone="$ZONE" $PROJECT_FLAG --command="
  set -e; mkdir -p $REMOTE_DIR && tar -C $REMOTE_DIR -xzf /tmp/slam_jax_src.tgz && cd $REMOTE_DIR &&
  SLAM_EXTRA_PIP='jax[tpu]' source launch/_venv.sh &&
  SLAM_DISTRIBUTED=auto python -m slam_jax.train --gin_file=$GIN_FILE $ARGS"
