"""Imports every module that registers gin configurables, so gin files can be parsed.

Importing this is what `slam_jax.train.parse_gin` does before reading any gin file; the seqio
task registrations (`tasks`) are imported too, so MIXTURE_OR_TASK_NAME can name any of them.
"""
# pylint: disable=unused-import
import tasks
from slam_jax import checkpoints
from slam_jax import model
from slam_jax import partitioning
from slam_jax import train
from slam_jax import trainer
from slam_jax.data import pipeline
from slam_jax.data import synthetic
from slam_jax.models import encoder
