"""`python -m slam_jax.data.demo --out DIR`: builds the offline demo corpus (see corpus.py)."""
from slam_jax.data.demo import corpus

corpus.main()
