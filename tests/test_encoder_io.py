"""slam_jax.encoder_io: encoder checkpoints, layer layouts, grafting into a train state."""
import types as pytypes

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slam_jax import convert
from slam_jax import encoder_io
from slam_jax import train as train_lib
from slam_jax import trainer as trainer_lib
from slam_jax.models import config as config_lib


def _random(config, seed=0):
  rng = np.random.RandomState(seed)
  flat = encoder_io.flatten(convert.abstract_params(config))
  return encoder_io.unflatten({k: rng.standard_normal(v.shape).astype(np.float32)
                               for k, v in flat.items()})


def _assert_trees_equal(a, b):
  fa, fb = encoder_io.flatten(a), encoder_io.flatten(b)
  assert set(fa) == set(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


def test_save_load_round_trip(tmp_path):
  config = config_lib.get_preset("w2v_bert_tiny")
  params = _random(config)
  vocab = tmp_path / "spm.model"
  vocab.write_bytes(b"not really a model")
  encoder_io.save(str(tmp_path / "ckpt"), config, params, frontend={"window": "povey"},
                  vocab=str(vocab))
  loaded_config, loaded = encoder_io.load(str(tmp_path / "ckpt"))
  assert loaded_config == config
  _assert_trees_equal(loaded, params)
  assert encoder_io.load_frontend(str(tmp_path / "ckpt")) == {"window": "povey"}
  assert open(encoder_io.vocab_path(str(tmp_path / "ckpt")), "rb").read() == b"not really a model"
  with pytest.raises(FileExistsError, match="choose a new"):
    encoder_io.save(str(tmp_path / "ckpt"), config, params)
  with pytest.raises(FileNotFoundError, match="not an encoder checkpoint"):
    encoder_io.load(str(tmp_path))


def test_relayout_round_trip_and_matches_unrolled_init():
  config = config_lib.get_preset("w2v_bert_tiny")
  scanned = _random(config)
  unrolled = encoder_io.relayout_layers(scanned, scan_layers=False)
  assert set(unrolled["shared_stack"]) == {"layer_0", "layer_1"}
  want = convert.abstract_params(config.replace(scan_layers=False))
  assert jax.tree_util.tree_map(np.shape, unrolled) == jax.tree_util.tree_map(
      lambda s: tuple(s.shape), want)
  np.testing.assert_array_equal(unrolled["shared_stack"]["layer_1"]["final_norm"]["bias"],
                                scanned["shared_stack"]["layers"]["final_norm"]["bias"][1])
  _assert_trees_equal(encoder_io.relayout_layers(unrolled, scan_layers=True), scanned)


def test_check_compatible_ignores_runtime_fields_only():
  config = config_lib.get_preset("w2v_bert_tiny")
  encoder_io.check_compatible(config, config.replace(dtype="bfloat16", scan_layers=False,
                                                     dropout_rate=0.3), "here")
  with pytest.raises(ValueError, match=r"here: .*vocab_size: checkpoint 128 vs model 64"):
    encoder_io.check_compatible(config, config.replace(vocab_size=64), "here")


def test_train_init_encoder_grafts_only_the_encoder(tmp_path):
  config = config_lib.get_preset("w2v_bert_tiny")
  ckpt_params = _random(config, seed=1)
  encoder_io.save(str(tmp_path / "ckpt"), config, ckpt_params)
  fresh = jax.tree_util.tree_map(jnp.asarray, _random(config, seed=2))
  quantizer = {"codebook": jnp.ones((3, 2))}
  state = trainer_lib.TrainState(step=jnp.zeros((), jnp.int32),
                                 params={"encoder": fresh, "quantizer": quantizer}, opt_state=(),
                                 bad_steps=jnp.zeros((), jnp.int32),
                                 skipped_steps=jnp.zeros((), jnp.int32))
  model = pytypes.SimpleNamespace(encoder_config=config.replace(dropout_rate=0.1))
  new = train_lib._init_encoder(state, model, str(tmp_path / "ckpt"))  # pylint: disable=protected-access
  _assert_trees_equal(new.params["encoder"], ckpt_params)
  _assert_trees_equal(new.params["quantizer"], quantizer)
  other = pytypes.SimpleNamespace(encoder_config=config.replace(num_shared_layers=1))
  with pytest.raises(ValueError, match="num_shared_layers: checkpoint 2 vs model 1"):
    train_lib._init_encoder(state, other, str(tmp_path / "ckpt"))  # pylint: disable=protected-access
  broken = dict(ckpt_params, mask_embedding=np.zeros(5, np.float32))
  with pytest.raises(ValueError, match=r"shape mismatches \['mask_embedding"):
    encoder_io.graft(state.params, broken, "here")
