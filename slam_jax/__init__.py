"""slam_jax: SLAM speech-text joint pre-training (Bapna et al., 2021) in JAX/Flax."""

__version__ = "0.1.0"
