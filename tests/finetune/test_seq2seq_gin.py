"""The seq2seq gin experiments parse and build their model (needs the fine-tuning loop's
gin/runs/finetune.gin; skipped on a tree without it)."""
import os

import gin
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = ["demo_st.gin", "demo_asr_s2s.gin", "covost2_en_de.gin", "covost2_en_ca.gin",
         "covost2_en_ar.gin", "covost2_en_tr.gin", "librispeech_asr_s2s.gin"]


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "gin", "runs", "finetune.gin")),
                    reason="the fine-tuning loop (gin/runs/finetune.gin) is not in this tree")
@pytest.mark.parametrize("name", FILES)
def test_gin_builds_seq2seq_model(name, monkeypatch):
  monkeypatch.chdir(ROOT)
  from slam_jax.finetune import seq2seq  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([os.path.join("gin", "finetune", name)],
                                        ["MODEL_DIR = '/tmp/unused'"])
    model = gin.query_parameter("slam_jax.finetune.train.finetune.model").scoped_configurable_fn()
    task = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
  finally:
    gin.clear_config()
  assert isinstance(model, seq2seq.Seq2SeqModel)
  if name.startswith("covost2"):
    assert task == "covost2_en_" + name[len("covost2_en_"):-len(".gin")]
    assert (model.decoder_config.num_layers, model.decoder_config.model_dim) == (4, 384)
    assert model.encoder_config.model_dim == 1024
  if name.startswith("demo"):
    assert model.decoder_config.vocab_size == 1024
