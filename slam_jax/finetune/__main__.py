"""`python -m slam_jax.finetune --gin_file=gin/finetune/<x>.gin [--gin.KEY=VALUE] [--resume]`."""
import sys

from slam_jax.finetune import train  # the imported module, so gin sees slam_jax.finetune.train.*

if __name__ == "__main__":
  train.main(sys.argv[1:])
