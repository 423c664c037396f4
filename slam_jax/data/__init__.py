"""Data side of slam_jax: front end, demo corpus, vocabulary, preparation, converter, pipeline.

Submodules import TensorFlow only where they need it (features, converters, pipeline, ...), so
the corpus builder's synthesis workers stay light.
"""
