"""Gin bindings shared by the tests that run gin/experiments/slam_demo_tiny.gin: the demo
experiment's pipeline and objectives on the tiny encoder and shorter rows (the demo's own sizes
cost ~4x the compile and step time; these tests check the data path, resume and multi-host)."""

MODEL_BINDINGS = (
    'TASK_FEATURE_LENGTHS = {"speech": 160, "text": 32}', "EVAL_EVERY = 0",
    "make_encoder_config.model_dim = 32", "make_encoder_config.num_heads = 2",
    "make_encoder_config.ffn_dim = 64", "make_encoder_config.num_speech_layers = 1",
    "make_encoder_config.num_shared_layers = 1", "make_encoder_config.conv_kernel_size = 3",
    "make_encoder_config.vocab_size = 256")
