"""Grammar and SentencePiece vocabulary: determinism, reserved ids, round trip through seqio."""
import random

import numpy as np
import pytest
import tensorflow as tf

from slam_jax.data import deferred_vocab
from slam_jax.data.demo import grammar
from slam_jax.data import vocab


@pytest.fixture(scope="module")
def sentences():
  return grammar.Grammar().sentences(random.Random(7), 600)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, sentences):
  return vocab.train_sentencepiece(sentences, str(tmp_path_factory.mktemp("spm") / "m"),
                                   vocab_size=200)


def test_grammar_is_deterministic_and_large():
  g = grammar.Grammar()
  assert g.sentences(random.Random(3), 20) == g.sentences(random.Random(3), 20)
  assert len(g.vocabulary()) > 2000
  words = set(g.vocabulary())
  for s in g.sentences(random.Random(4), 300):
    assert s == s.lower() and set(s.split()) <= words


def test_training_is_deterministic(tmp_path, sentences, model_path):
  again = vocab.train_sentencepiece(sentences, str(tmp_path / "m"), vocab_size=200)
  assert open(again, "rb").read() == open(model_path, "rb").read()


def test_seqio_round_trip_and_reserved_ids(model_path, sentences):
  v = vocab.get_vocabulary(model_path)
  assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  assert v.vocab_size == 200 + vocab.DEFAULT_EXTRA_IDS
  text = sentences[0]
  ids = v.encode(text)
  assert min(ids) > 2 and v.decode(ids) == text
  tf_ids = v.encode_tf(tf.constant(text)).numpy()
  np.testing.assert_array_equal(tf_ids, ids)


def test_deferred_vocabulary_resolves_late(model_path):
  box = {"path": "/nonexistent/spm.model"}
  path_fn = lambda: box["path"]
  v = deferred_vocab.DeferredSentencePieceVocabulary(path_fn)
  with pytest.raises(FileNotFoundError, match="slam_jax.data.demo"):
    v.encode("hello")
  box["path"] = model_path
  assert v.decode(v.encode("the dog")) == "the dog"
  assert v == deferred_vocab.DeferredSentencePieceVocabulary(path_fn)


def test_character_checker(model_path):
  checker = vocab.CharacterChecker(model_path)
  assert checker.unencodable("The DOG ran") == []
  assert checker.unencodable("the dog ☃ ran ✓") == ["☃", "✓"]
  assert checker.strip("the dog ☃ ran") == "the dog ran"
