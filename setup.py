"""slam_jax: SLAM speech-text joint pre-training in JAX/Flax.

Floors are versions tested together; `launch/constraints.txt` pins the exact set the launch
scripts install, so a fresh machine gets what CI ran.
"""
import setuptools

setuptools.setup(
    name="slam_jax",
    version="0.1.0",
    description="SLAM: one Conformer encoder pre-trained jointly on speech and text (JAX/Flax).",
    packages=setuptools.find_packages(include=["slam_jax", "slam_jax.*", "tasks", "tasks.*"]),
    package_data={"": ["*.gin"]},
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "seqio>=0.0.20",
        "tensorflow-cpu>=2.21.0",
        "tensorflow-datasets>=4.9.10",
        "sentencepiece>=0.2.2",
        "gin-config>=0.5.0",
        "clu>=0.0.12",
        "numpy>=2.0",
        "soundfile>=0.14.0",  # Bundles libsndfile >= 1.1: MP3 and Opus decoding.
        "soxr>=1.1.0",  # High-quality resampling (audio.resample).
        "tensorboard>=2.21.0",
        "espeakng-loader>=0.2.4",
        "jiwer>=4.0.0",  # WER (slam_jax/metrics.py)
        "sacrebleu>=2.6.0",  # BLEU / chrF (slam_jax/finetune/st_metrics.py)
        # t5x, airio and jestimator themselves come from launch/_venv.sh (--no-deps: the package
        # index has only a t5x placeholder); these are what they import beyond the above.
        "fiddle>=0.3.1",
        "cached-property>=2.0.1",
        "chex>=0.1.92",
        "jaxtyping>=0.3.11",
        "grain>=0.2.18",
    ],
    extras_require={
        # pytest-xdist: launch/test.sh spreads the suite over the machine's cores (up to 4).
        # pytest < 9.2: pytest 9.2's structured node ids silently break xdist 3.8's
        # `--dist loadgroup` (pytest-xdist issue #1386), which keeps the tests that share a
        # session fixture or compiled step on one worker (tests/test_launch.py checks it).
        # torch + transformers: the parity tests against HF Wav2Vec2BertModel
        # (tests/test_convert.py) and the Kaldi fbank check; pinned to the CPU wheel that lies on
        # disk here (a plain 'torch' would pull a multi-GB CUDA build).
        # apache-beam: the prepare_beam and seqio cache_tasks_main tests (DirectRunner).
        "test": ["pytest>=9.0,<9.2", "pytest-xdist>=3.8.0", "filelock>=4.3.1", "torch==2.13.0",
                 "transformers>=5.24.0", "apache-beam[tfrecord]>=2.77.0"],
        # `python -m slam_jax.data.prepare_beam` and seqio's cache_tasks_main (needs protobuf<7:
        # launch/constraints.txt pins protobuf 6.33, which TensorFlow 2.21 accepts).
        "beam": ["apache-beam[tfrecord]>=2.77.0"],
        # The PyTorch peer for `python -m slam_jax.bench --peer` (CPU build lies on disk here).
        "bench": ["torch==2.13.0", "transformers>=5.24.0"],
        # `python -m slam_jax.convert` (HF directories are safetensors files; to-hf's key check
        # builds transformers' model on the meta device).
        "hf": ["safetensors>=0.8.0", "transformers>=5.24.0", "torch==2.13.0"],
    },
)
