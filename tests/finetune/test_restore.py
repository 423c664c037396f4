"""Partial restore: pre-trained values in the encoder, fresh ones in the head; clear errors."""
import jax
import numpy as np
import pytest

from slam_jax import checkpoints
from slam_jax import model as model_lib
from slam_jax import partitioning
from slam_jax.finetune import ctc
from slam_jax.finetune import restore
from slam_jax.models import encoder as encoder_lib

FEATURES = {"speech": 32, "text": 8}


class _Vocab:
  vocab_size = 12

  def decode(self, ids):
    return " ".join(map(str, ids))


def _save_pretraining_checkpoint(model_dir, config, seed=1):
  slam = model_lib.SlamModel(config)
  shapes, dtypes = slam.input_shapes_and_types(2, FEATURES)
  init = jax.jit(lambda key: partitioning.unbox(slam.get_initial_variables(key, shapes, dtypes)))
  params = init(jax.random.PRNGKey(seed))["params"]
  state = {"step": np.int32(5), "params": params, "opt_state": {"mu": params}}
  ckpt = checkpoints.Checkpointer(str(model_dir / "checkpoints"),
                                  checkpoints.CheckpointConfig(async_save=False))
  ckpt.save(5, state, {"batches_consumed": 5}, force=True)
  ckpt.close()
  return params


def _abstract_encoder(model):
  shapes, dtypes = model.input_shapes_and_types(2, FEATURES)
  abstract = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes,
                                                                dtypes))
  return partitioning.unbox(abstract)["params"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("pretrain")
  config = encoder_lib.get_preset("tiny")
  return model_dir, config, _save_pretraining_checkpoint(model_dir, config)


def test_restore_puts_pretrained_values_in_encoder_and_fresh_head(pretrained):
  model_dir, config, saved = pretrained
  model = ctc.CtcAsrModel(config, _Vocab())
  abstract = _abstract_encoder(model)
  for path in (str(model_dir), str(model_dir / "checkpoints"), str(model_dir / "checkpoints/5")):
    encoder = restore.restore_encoder_params(path, abstract["encoder"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, encoder, saved["encoder"])
  # The fine-tuning loop's composition: restored encoder + fresh head.
  shapes, dtypes = model.input_shapes_and_types(2, FEATURES)
  fresh = jax.jit(lambda key: partitioning.unbox(model.get_initial_variables(
      key, shapes, dtypes)))(jax.random.PRNGKey(0))["params"]
  merged = dict(fresh, encoder=encoder)
  assert not np.allclose(fresh["encoder"]["mask_embedding"], saved["encoder"]["mask_embedding"])
  np.testing.assert_array_equal(merged["encoder"]["mask_embedding"],
                                saved["encoder"]["mask_embedding"])
  np.testing.assert_array_equal(merged["head"]["kernel"], fresh["head"]["kernel"])
  assert "quantizer" not in merged and "stm_head" not in merged


def test_restore_of_another_model_size_names_the_parameter(pretrained):
  model_dir, config, _ = pretrained
  bigger = ctc.CtcAsrModel(config.replace(model_dim=48, num_heads=2), _Vocab())
  with pytest.raises(ValueError, match=r"shapes differ.*mask_embedding|shapes differ"):
    restore.restore_encoder_params(str(model_dir), _abstract_encoder(bigger)["encoder"])
  deeper = ctc.CtcAsrModel(config.replace(scan_layers=False), _Vocab())
  with pytest.raises(ValueError, match="layer_0"):
    restore.restore_encoder_params(str(model_dir), _abstract_encoder(deeper)["encoder"])


def test_path_without_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    restore.find_checkpoint(str(tmp_path))
