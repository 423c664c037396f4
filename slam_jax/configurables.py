"""Imports every module that registers gin configurables, so gin files can be parsed.

Importing this is what `slam_jax.train.parse_gin` does before reading any gin file (the entry
point itself, `slam_jax.train`, is already imported then). The seqio task registrations (`tasks`)
are imported by the entry points, never by the library: see `slam_jax.train.parse_gin`.
"""
# pylint: disable=unused-import
from slam_jax import checkpoints
from slam_jax import model
from slam_jax import partitioning
from slam_jax import trainer
from slam_jax.data import pipeline
from slam_jax.data import synthetic
from slam_jax.models import encoder
