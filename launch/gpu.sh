#!/usr/bin/env bash
# Launch a slam_jax experiment on NVIDIA GPUs.
#
# One host, all its GPUs (one process drives every local GPU):
#   ./launch/gpu.sh gin/experiments/slam.gin --gin.MODEL_DIR="'runs/slam'"
# Several hosts under SLURM (one process per host; JAX reads the SLURM environment):
#   srun --nodes=4 --ntasks-per-node=1 --gpus-per-node=8 \
#       env SLAM_DISTRIBUTED=auto ./launch/gpu.sh gin/experiments/slam.gin --gin.MODEL_DIR="'/shared/slam'"
# Elsewhere set SLAM_DISTRIBUTED="COORDINATOR_IP:PORT,NUM_PROCESSES,PROCESS_ID" on each host.
# Exit status: 0 finished; 75 preempted (SIGTERM/SIGINT; a checkpoint was saved: relaunch with
# --resume, e.g. SLURM --requeue / Kubernetes restartPolicy: OnFailure); 1 error. See
# docs/failure_modes.md (also: one trainer per MODEL_DIR, --resume_step=N after divergence).
set -euo pipefail
GIN_FILE=${1:?usage: gpu.sh GIN_FILE [--gin.KEY=VALUE ...] [--resume]}
shift
export SLAM_EXTRA_PIP=${SLAM_EXTRA_PIP:-jax[cuda12]}
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# Let XLA use most of the GPU memory up front and overlap collectives with compute.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
exec python -m slam_jax.train --gin_file="$GIN_FILE" --gin.make_encoder_config.dtype="'bfloat16'" "$@"
