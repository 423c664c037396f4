"""tf.data steps the seqio tasks chain: raw records -> task features {speech, text, kind}.

Each source is first mapped to a common raw form {"id": string, "audio": int16 [samples]
(speech sources), "transcript": string (text sources)}; then `speech_features` (length rules
before the front end, then log-mel), `text_tokens` (normalise, check characters, tokenise,
length rules, EOS) and `finalize` (fill the empty slot, set `kind`). Every drop or trim is
counted in `filters` under "TASK/REASON".
"""

from typing import Mapping, Optional

import tensorflow as tf

from slam_jax import types
from slam_jax.data import features as features_lib
from slam_jax.data import filters as filters_lib
from slam_jax.data import vocab as vocab_lib

AUTOTUNE = tf.data.AUTOTUNE

# Parsing spec of the TFRecords written by slam_jax.data.prepare.
PREPARED_FEATURE_DESCRIPTION = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "audio": tf.io.FixedLenFeature([], tf.string),
    "num_samples": tf.io.FixedLenFeature([], tf.int64),
    "transcript": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "speaker": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


# --- sources -> raw form ------------------------------------------------------------------------

def from_prepared(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Parsed prepared records -> {id, audio int16 [n], transcript}."""
  def fn(ex):
    return {"id": ex["id"], "audio": tf.io.decode_raw(ex["audio"], tf.int16, little_endian=True),
            "transcript": ex["transcript"]}
  return ds.map(fn, num_parallel_calls=AUTOTUNE)


def from_tfds_librispeech(ds: tf.data.Dataset) -> tf.data.Dataset:
  """TFDS `librispeech` examples -> {id, audio int16 [n], transcript}."""
  def fn(ex):
    return {"id": ex["id"], "audio": tf.cast(ex["speech"], tf.int16), "transcript": ex["text"]}
  return ds.map(fn, num_parallel_calls=AUTOTUNE)


def from_text_field(ds: tf.data.Dataset, field: str = "text") -> tf.data.Dataset:
  """Examples with a text field (TFDS c4) -> {id, transcript}."""
  def fn(ex):
    return {"id": ex.get("url", tf.constant("")), "transcript": ex[field]}
  return ds.map(fn, num_parallel_calls=AUTOTUNE)


def from_text_lines(ds: tf.data.Dataset, strip_ids: bool = False) -> tf.data.Dataset:
  """Lines of text files -> {id, transcript}; `strip_ids` drops a leading "ID " (*.trans.txt)."""
  def fn(line):
    line = tf.strings.strip(line)
    if strip_ids:
      parts = tf.strings.split(line, sep=" ", maxsplit=1)
      uid = parts[0]
      text = tf.cond(tf.size(parts) > 1, lambda: parts[-1], lambda: tf.constant(""))
      return {"id": uid, "transcript": text}
    return {"id": tf.constant(""), "transcript": line}
  return ds.map(fn, num_parallel_calls=AUTOTUNE)


# --- speech ------------------------------------------------------------------------------------

def speech_features(ds: tf.data.Dataset, *, task_name: str,
                    frontend: features_lib.LogMelConfig, config: filters_lib.FilterConfig,
                    sequence_length: Optional[Mapping[str, int]] = None) -> tf.data.Dataset:
  """{audio int16 [n]} -> {speech float32 [frames, bins]} with the length rules of `config`.

  Lengths are decided from the sample count before the front end runs, so dropped or trimmed
  audio costs no feature computation.
  """
  max_frames = config.max_speech_frames
  if max_frames is None and sequence_length and sequence_length.get(types.TASK_SPEECH):
    max_frames = int(sequence_length[types.TASK_SPEECH])
  frame_length, frame_step = frontend.frame_length, frontend.frame_step

  def frames_of(ex):
    n = tf.cast(tf.shape(ex["audio"])[0], tf.int64)
    return tf.where(n < frame_length, tf.constant(0, tf.int64), 1 + (n - frame_length) // frame_step)

  def not_short(ex):
    return filters_lib.keep_and_count(f"{task_name}/too_short",
                                      frames_of(ex) < config.min_speech_frames, ex["id"])

  ds = ds.filter(not_short)
  if max_frames is not None:
    too_long = lambda ex: frames_of(ex) > max_frames
    if config.long_speech == "drop":
      ds = ds.filter(lambda ex: filters_lib.keep_and_count(f"{task_name}/speech_too_long",
                                                           too_long(ex), ex["id"]))
    else:
      max_samples = features_lib.max_samples_for_frames(max_frames, frontend)

      def trim(ex):
        with tf.control_dependencies([filters_lib.count_where(f"{task_name}/speech_too_long",
                                                              too_long(ex), ex["id"])]):
          audio = tf.identity(ex["audio"][:max_samples])
        return dict(ex, audio=audio)
      ds = ds.map(trim, num_parallel_calls=AUTOTUNE)

  def to_features(ex):
    out = {k: v for k, v in ex.items() if k != "audio"}
    out[types.TASK_SPEECH] = features_lib.log_mel(ex["audio"], frontend)
    return out
  return ds.map(to_features, num_parallel_calls=AUTOTUNE)


# --- text --------------------------------------------------------------------------------------

def normalize_text_tf(text: tf.Tensor) -> tf.Tensor:
  """TF twin of `vocab.normalize_text`: Unicode lower case, single spaces, stripped."""
  text = tf.strings.lower(text, encoding="utf-8")
  return tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))


def _char_class(chars) -> str:
  return "".join(f"\\x{{{ord(c):x}}}" for c in sorted(chars))


def text_tokens(ds: tf.data.Dataset, *, task_name: str, vocabulary,
                config: filters_lib.FilterConfig,
                sequence_length: Optional[Mapping[str, int]] = None) -> tf.data.Dataset:
  """{transcript string} -> {text int32 [tokens + EOS]} with the rules of `config`."""
  ds = tokenize_text(ds, task_name=task_name, vocabulary=vocabulary, config=config)
  return text_lengths(ds, task_name=task_name, config=config, sequence_length=sequence_length)


def tokenize_text(ds: tf.data.Dataset, *, task_name: str, vocabulary,
                  config: filters_lib.FilterConfig) -> tf.data.Dataset:
  """{transcript string} -> {text int32 [tokens]}: normalised, unencodable/empty rules applied.

  Independent of the sequence length, so seqio can cache its output (CacheDatasetPlaceholder).
  """
  ds = ds.map(lambda ex: dict(ex, transcript=normalize_text_tf(ex["transcript"])),
              num_parallel_calls=AUTOTUNE)

  # Characters outside the vocabulary's pieces are counted under every policy.
  vocabulary.tokenizer  # pylint: disable=pointless-statement  # Loads it: a clear error if missing.
  allowed = vocab_lib.piece_characters(vocabulary.sentencepiece_model_file)
  bad_class = "[^" + _char_class(allowed) + "]"
  has_bad = lambda ex: tf.strings.regex_full_match(ex["transcript"], f"(?s).*{bad_class}.*")
  name = f"{task_name}/unencodable"
  if config.unencodable == "drop":
    ds = ds.filter(lambda ex: filters_lib.keep_and_count(name, has_bad(ex), ex["id"]))
  else:
    def check(ex):
      with tf.control_dependencies([filters_lib.count_where(name, has_bad(ex), ex["id"])]):
        text = tf.identity(ex["transcript"])
      if config.unencodable == "strip":
        text = normalize_text_tf(tf.strings.regex_replace(text, bad_class, ""))
      return dict(ex, transcript=text)
    ds = ds.map(check, num_parallel_calls=AUTOTUNE)

  is_empty = lambda ex: tf.equal(tf.strings.length(ex["transcript"]), 0)
  name = f"{task_name}/empty_text"
  if config.empty_text == "drop":
    ds = ds.filter(lambda ex: filters_lib.keep_and_count(name, is_empty(ex), ex["id"]))
  else:
    def count_empty(ex):
      with tf.control_dependencies([filters_lib.count_where(name, is_empty(ex), ex["id"])]):
        return dict(ex, transcript=tf.identity(ex["transcript"]))
    ds = ds.map(count_empty, num_parallel_calls=AUTOTUNE)

  def tokenize(ex):
    ids = tf.cast(vocabulary.encode_tf(ex["transcript"]), tf.int32)
    return dict(ex, text=ids)
  return ds.map(tokenize, num_parallel_calls=AUTOTUNE)


def text_lengths(ds: tf.data.Dataset, *, task_name: str, config: filters_lib.FilterConfig,
                 sequence_length: Optional[Mapping[str, int]] = None) -> tf.data.Dataset:
  """{text int32 [tokens]} -> [tokens + EOS], longer rows dropped or trimmed per `config`."""
  max_tokens = config.max_text_tokens
  if max_tokens is None and sequence_length and sequence_length.get(types.TASK_TEXT):
    max_tokens = int(sequence_length[types.TASK_TEXT])
  if max_tokens is not None and max_tokens < 1:
    raise ValueError(f"{task_name}: the text length must be >= 1 (room for EOS), got {max_tokens}")
  if max_tokens is not None:
    too_long = lambda ex: tf.shape(ex["text"])[0] > max_tokens - 1
    name = f"{task_name}/text_too_long"
    if config.long_text == "drop":
      ds = ds.filter(lambda ex: filters_lib.keep_and_count(name, too_long(ex), ex["id"]))
    else:
      def trim(ex):
        with tf.control_dependencies([filters_lib.count_where(name, too_long(ex), ex["id"])]):
          ids = tf.identity(ex["text"][:max_tokens - 1])
        return dict(ex, text=ids)
      ds = ds.map(trim, num_parallel_calls=AUTOTUNE)

  eos = tf.constant([vocab_lib.EOS_ID], tf.int32)
  return ds.map(lambda ex: dict(ex, text=tf.concat([ex["text"], eos], axis=0)),
                num_parallel_calls=AUTOTUNE)


# --- final layout ----------------------------------------------------------------------------

def finalize(ds: tf.data.Dataset, *, kind: int,
             num_mel_bins: int = types.NUM_MEL_BINS) -> tf.data.Dataset:
  """Keeps {speech, text, kind, id}; fills the slot this kind lacks with an empty tensor."""
  def fn(ex):
    speech = ex.get(types.TASK_SPEECH)
    if speech is None:
      speech = tf.zeros([0, num_mel_bins], tf.float32)
    text = ex.get(types.TASK_TEXT)
    if text is None:
      text = tf.zeros([0], tf.int32)
    return {types.TASK_SPEECH: speech, types.TASK_TEXT: text,
            types.TASK_KIND: tf.constant([kind], tf.int32), "id": ex.get("id", tf.constant(""))}
  return ds.map(fn, num_parallel_calls=AUTOTUNE)
