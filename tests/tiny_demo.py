"""Gin bindings shared by the tests that run the demo's gin files on the tiny encoder
(gin/experiments/slam_demo_tiny.gin, gin/finetune/demo_*.gin): the demo's own sizes cost ~4x the
compile and step time, and these tests check the data path, resume, multi-host and the
fine-tuning entry points."""

# The demo encoder shrunk to test size (make_encoder_config in gin/finetune/demo_encoder.gin and
# slam_demo_tiny.gin).
ENCODER_BINDINGS = (
    "make_encoder_config.model_dim = 32", "make_encoder_config.num_heads = 2",
    "make_encoder_config.ffn_dim = 64", "make_encoder_config.num_speech_layers = 1",
    "make_encoder_config.num_shared_layers = 1", "make_encoder_config.conv_kernel_size = 3",
    "make_encoder_config.vocab_size = 256")

# Pre-training on the demo mixture: the tiny encoder, shorter rows, no periodic validation.
MODEL_BINDINGS = ('TASK_FEATURE_LENGTHS = {"speech": 160, "text": 32}', "EVAL_EVERY = 0",
                  *ENCODER_BINDINGS)
