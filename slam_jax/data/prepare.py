"""Decode a LibriSpeech-layout corpus once into sharded TFRecords that training reads.

  python -m slam_jax.data.prepare --src DIR --out CACHE_DIR --split train \
      [--num_shards N] [--process_index K --num_processes P] [--workers W] \
      [--vocab_path spm.model] [--max_seconds 35 --long_policy drop|trim|split] \
      [--min_seconds 0.1] [--empty_transcript drop|keep] [--require_transcript] \
      [--unencodable keep|strip|speech_only] [--silence drop|keep] [--overwrite]

Works for LibriSpeech, Libri-Light (audio only; `--long_policy split` cuts hour-long files into
pieces of at most `max_seconds`, each cut at the quietest 10 ms within the last
`split_search_seconds` before the limit, i.e. at a pause) and the demo corpus. Output, per split:

  CACHE_DIR/SPLIT.tfrecord-SSSSS-of-NNNNN   tf.train.Example records (schema: FEATURES below)
  CACHE_DIR/stats/SPLIT-SSSSS-of-NNNNN.json counts for that shard
  CACHE_DIR/SPLIT.summary.json             counts summed over the shards present
  CACHE_DIR/SPLIT.COMPLETED                written once every shard is done (removed at start)

Utterance i (sorted by id) goes to shard i % N; process K of P writes the shards s with
s % P == K, so several processes (or hosts) can prepare one corpus without coordination; on a
cluster, `python -m slam_jax.data.prepare_beam` runs the same shards as an Apache Beam pipeline.
A finished shard is skipped on a rerun unless --overwrite (files are renamed into place when
complete) -- but only while the fingerprint of its inputs (ids, audio paths, sizes, mtimes,
transcripts, settings) recorded in stats/.SPLIT-SSSSS-of-NNNNN.fingerprint matches; a changed source redoes the shard with a
warning. A split that finds no utterance, or writes no example, warns (and says so in the
summary's "warnings"). Bad input never stops the run: each problem is counted under a reason (REASONS), the
first few offenders per reason are logged with their path/id and listed in the JSON.
"""

import argparse
import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import gin
import numpy as np

from slam_jax import types
from slam_jax.data import audio as audio_lib
from slam_jax.data import layout

# tf.train.Example schema of a prepared record.
FEATURES = {
    "id": "bytes: utterance id",
    "audio": "bytes: little-endian int16 PCM, mono, 16 kHz",
    "num_samples": "int64",
    "transcript": "bytes: UTF-8, may be empty",
    "speaker": "bytes",
    "sample_rate": "int64: always 16000",
}

REASONS = {
    "missing_audio": "a transcript line without an audio file (dropped)",
    "missing_transcript": "audio without a (readable) transcript line in a directory that has a "
                          "transcript file, or anywhere with --require_transcript (kept as "
                          "speech-only; dropped with --require_transcript)",
    "empty_transcript": "a transcript line with no text (dropped or kept per --empty_transcript)",
    "unencodable": "transcript characters the vocabulary maps to UNK (per --unencodable; the "
                   "audio is always kept)",
    "empty_audio": "a 0-byte file or one without samples (dropped)",
    "truncated_audio": "fewer samples than the header promises, or undecodable data after a "
                       "valid header (dropped; re-copy the file)",
    "decode_error": "not audio, a container libsndfile cannot read (m4a), or NaN/Inf samples "
                    "(dropped)",
    "silent": "digital silence or RMS under --silence_dbfs (dropped or kept per --silence)",
    "skipped_file": "a file that is neither a transcript nor audio by content (ignored)",
    "too_short": "shorter than --min_seconds (dropped)",
    "too_long": "longer than --max_seconds (dropped, trimmed or split per --long_policy)",
    "malformed_transcript_line": "a *.trans.txt line that is not UTF-8 (skipped)",
    "duplicate_id": "an id seen twice: a second audio file is kept under its relative path, a "
                    "second transcript line replaces the first",
}
LONG_POLICIES = ("drop", "trim", "split")
EMPTY_POLICIES = ("drop", "keep")
# The same default ("keep": unencodable characters become UNK) as filters.FilterConfig.
UNENCODABLE_POLICIES = ("keep", "strip", "speech_only")
SILENCE_POLICIES = ("drop", "keep")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PrepareConfig:
  """What to do with bad input (see REASONS). CLI flags of the same names override these.

  Attributes:
    min_seconds: shorter utterances are dropped.
    max_seconds: longer utterances follow `long_policy`.
    long_policy: "drop"; "trim" (keep the first max_seconds, transcript unchanged); "split"
      (audio without transcript only, cut at pauses into pieces "ID_000", ... of at most
      max_seconds; transcribed audio is dropped).
    split_search_seconds: "split" cuts at the quietest frame in the last this-many seconds
      before max_seconds (so pieces last between max - search and max seconds).
    empty_transcript: "drop" or "keep" an utterance whose transcript line has no text.
    require_transcript: drop audio that has no transcript line at all (paired corpora).
    unencodable: "keep" (the characters become UNK, as in the task pipelines), "strip" the
      characters, or "speech_only" (write the audio without its transcript). Never drops audio.
    silence: "drop" or "keep" audio that is digital silence or quieter than silence_dbfs.
    silence_dbfs: RMS level (dB re full scale) under which audio counts as silent.
    vocab_path: SentencePiece model for the unencodable check (None: no check).
    max_logged: offenders logged (and listed in the JSON) per reason.
  """
  min_seconds: float = 0.1
  max_seconds: float = 35.0
  long_policy: str = "drop"
  split_search_seconds: float = 5.0
  empty_transcript: str = "drop"
  require_transcript: bool = False
  unencodable: str = "keep"
  silence: str = "drop"
  silence_dbfs: float = audio_lib.SILENCE_DBFS
  vocab_path: Optional[str] = None
  max_logged: int = 5

  def __post_init__(self):
    if self.unencodable == "drop":
      raise ValueError("PrepareConfig.unencodable='drop' is gone (it threw the speech away): "
                       "use 'speech_only' to keep the audio without its transcript")
    for name, allowed in (("long_policy", LONG_POLICIES), ("empty_transcript", EMPTY_POLICIES),
                          ("unencodable", UNENCODABLE_POLICIES), ("silence", SILENCE_POLICIES)):
      if getattr(self, name) not in allowed:
        raise ValueError(f"PrepareConfig.{name}={getattr(self, name)!r}: use one of {allowed}")
    if not 0 <= self.min_seconds < self.max_seconds:
      raise ValueError(f"need 0 <= min_seconds ({self.min_seconds}) < max_seconds "
                       f"({self.max_seconds})")


@dataclasses.dataclass
class Record:
  id: str
  audio: np.ndarray  # int16 [samples]
  transcript: str
  speaker: str


@dataclasses.dataclass
class Event:
  reason: str
  where: str  # path or id
  detail: str
  dropped: bool


class Stats:
  """Counts per reason plus totals; `to_json` is what the summary files hold."""

  def __init__(self, max_logged: int = 5):
    self.max_logged = max_logged
    self.counts: Dict[str, int] = collections.Counter()
    self.dropped: Dict[str, int] = collections.Counter()
    self.examples: Dict[str, List[str]] = collections.defaultdict(list)
    self.seen = 0
    self.written = 0
    self.paired = 0
    self.seconds = 0.0

  def add(self, event: Event) -> None:
    self.counts[event.reason] += 1
    if event.dropped:
      self.dropped[event.reason] += 1
    if len(self.examples[event.reason]) < self.max_logged:
      self.examples[event.reason].append(f"{event.where}: {event.detail}")
      logging.warning("prepare: %s (%s) %s: %s", event.reason,
                      "dropped" if event.dropped else "kept", event.where, event.detail)

  def merge(self, other: Dict) -> None:
    self.seen += other["utterances_seen"]
    self.written += other["examples_written"]
    self.paired += other.get("paired_written", 0)
    self.seconds += other["seconds_written"]
    for k, v in other["counts"].items():
      self.counts[k] += v
    for k, v in other["dropped"].items():
      self.dropped[k] += v
    for k, v in other["examples"].items():
      room = self.max_logged - len(self.examples[k])
      self.examples[k].extend(v[:max(room, 0)])

  def to_json(self) -> Dict:
    return {
        "utterances_seen": self.seen,
        "examples_written": self.written,
        "paired_written": self.paired,
        "speech_only_written": self.written - self.paired,
        "seconds_written": round(self.seconds, 3),
        "hours_written": round(self.seconds / 3600.0, 4),
        "counts": dict(sorted(self.counts.items())),
        "dropped": dict(sorted(self.dropped.items())),
        "examples": {k: v for k, v in sorted(self.examples.items()) if v},
    }


def process_utterance(utt: layout.Utterance, config: PrepareConfig,
                      checker=None) -> Tuple[List[Record], List[Event]]:
  """Applies every check to one utterance: (records to write, events to count)."""
  events: List[Event] = []
  where = utt.audio_path or utt.id
  transcript = utt.transcript
  if utt.audio_path is None:
    return [], [Event("missing_audio", utt.id, "transcript without an audio file", True)]
  if transcript is None:
    detail = utt.transcript_error or "no transcript line for this id"
    if config.require_transcript:
      return [], [Event("missing_transcript", where, detail, True)]
    if utt.transcript_error or utt.paired_dir:  # A lost pairing, not an audio-only corpus.
      events.append(Event("missing_transcript", where, detail + " (kept as speech-only)", False))
    transcript = ""
  elif not transcript.strip():
    drop = config.empty_transcript == "drop"
    events.append(Event("empty_transcript", where, "transcript line has no text", drop))
    if drop:
      return [], events
  if transcript and checker is not None:
    bad = checker.unencodable(transcript)
    if bad:
      events.append(Event("unencodable", where,
                          f"characters {''.join(bad)!r} ({config.unencodable})", False))
      if config.unencodable == "speech_only":
        transcript = ""
      elif config.unencodable == "strip":
        transcript = checker.strip(transcript)
        if not transcript:
          events.append(Event("empty_transcript", where, "empty after stripping (kept as "
                              "speech-only)", False))
  try:
    samples, _ = audio_lib.load_audio(utt.audio_path)
  except audio_lib.AudioDecodeError as e:
    reason = {"empty": "empty_audio", "truncated": "truncated_audio",
              "corrupt": "truncated_audio"}.get(e.reason, "decode_error")
    events.append(Event(reason, where, e.detail, True))
    return [], events
  pcm = audio_lib.float_to_int16(samples)
  kind, level = audio_lib.silence_level(pcm)
  if kind == "near" and level >= config.silence_dbfs:
    kind = ""
  if kind:
    drop = config.silence == "drop"
    events.append(Event("silent", where, f"{kind} silence (RMS {level:.1f} dBFS)", drop))
    if drop:
      return [], events
  seconds = pcm.shape[0] / types.SAMPLE_RATE
  if seconds < config.min_seconds:
    events.append(Event("too_short", where, f"{seconds:.3f} s < {config.min_seconds} s", True))
    return [], events
  max_samples = int(round(config.max_seconds * types.SAMPLE_RATE))
  if pcm.shape[0] > max_samples:
    policy = config.long_policy
    if policy == "split" and utt.transcript:
      policy = "drop"  # A transcript cannot be split with the audio.
    events.append(Event("too_long", where, f"{seconds:.2f} s > {config.max_seconds} s ({policy})",
                        policy == "drop"))
    if policy == "drop":
      return [], events
    if policy == "trim":
      pcm = pcm[:max_samples]
    else:
      min_samples = int(math.ceil(config.min_seconds * types.SAMPLE_RATE))
      search = int(round(config.split_search_seconds * types.SAMPLE_RATE))
      bounds = split_at_pauses(pcm, max_samples, search)
      records = []
      for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        piece = pcm[a:b]
        if piece.shape[0] < max(min_samples, 1):
          continue
        quiet, _ = audio_lib.silence_level(piece)
        if quiet == "digital" and config.silence == "drop":
          events.append(Event("silent", f"{where}[{k}]", "digital silence", True))
          continue
        records.append(Record(f"{utt.id}_{k:03d}", piece, "", utt.speaker))
      return records, events
  return [Record(utt.id, pcm, transcript, utt.speaker)], events


def split_at_pauses(pcm: np.ndarray, max_samples: int, search_samples: int,
                    hop: int = types.SAMPLE_RATE // 100) -> List[int]:
  """Cut points [0, c1, ..., len] of [samples] audio into pieces of at most `max_samples`.

  Each cut is at the start of the lowest-energy `hop`-sample frame (10 ms) in the last
  `search_samples` (at most half of `max_samples`) before the limit: a pause when there is one,
  the quietest spot otherwise (the latest of equals, so a steady signal is cut at the limit).
  """
  n = int(pcm.shape[0])
  cuts = [0]
  x = np.asarray(pcm, np.float64)
  while n - cuts[-1] > max_samples:
    start = cuts[-1]
    search = min(max(search_samples, hop), max_samples // 2)
    frames = max(search // hop, 1)
    lo = start + max_samples - frames * hop
    energy = np.square(x[lo:lo + frames * hop]).reshape(frames, hop).sum(axis=1)
    quietest = frames - 1 - int(np.argmin(energy[::-1]))  # The latest of equally quiet frames.
    cuts.append(lo + quietest * hop)
  cuts.append(n)
  return cuts


# --- TFRecord output -------------------------------------------------------------------------

def shard_path(out_dir: str, split: str, shard: int, num_shards: int) -> str:
  return os.path.join(out_dir, f"{split}.tfrecord-{shard:05d}-of-{num_shards:05d}")


def file_pattern(cache_dir: str, split: str) -> str:
  """The glob matching every prepared shard of `split` in `cache_dir`."""
  return os.path.join(cache_dir, f"{split}.tfrecord-*-of-*")


def _stats_path(out_dir: str, split: str, shard: int, num_shards: int) -> str:
  return os.path.join(out_dir, "stats", f"{split}-{shard:05d}-of-{num_shards:05d}.json")


def serialize(record: Record) -> bytes:
  """One tf.train.Example (schema FEATURES)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  feature = {
      "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.id.encode()])),
      "audio": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[np.asarray(record.audio, "<i2").tobytes()])),
      "num_samples": tf.train.Feature(int64_list=tf.train.Int64List(
          value=[int(record.audio.shape[0])])),
      "transcript": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[record.transcript.encode("utf-8")])),
      "speaker": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.speaker.encode()])),
      "sample_rate": tf.train.Feature(int64_list=tf.train.Int64List(value=[types.SAMPLE_RATE])),
  }
  # deterministic: the feature map in key order, so a rebuild in another process (another hash
  # seed) writes the same bytes.
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString(deterministic=True)


_WORKER_STATE = {}


def _worker_init(config: PrepareConfig) -> None:
  _WORKER_STATE["config"] = config
  _WORKER_STATE["checker"] = _make_checker(config)


def _worker_process(utt: layout.Utterance):
  return process_utterance(utt, _WORKER_STATE["config"], _WORKER_STATE["checker"])


def _make_checker(config: PrepareConfig):
  if not config.vocab_path:
    return None
  from slam_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  return vocab_lib.CharacterChecker(config.vocab_path)


def fingerprint(utts: Sequence[layout.Utterance], config: PrepareConfig, num_shards: int,
                src: str) -> str:
  """sha256 of what a shard is made from: ids, audio path/size/mtime, transcripts, settings."""
  h = hashlib.sha256()
  h.update(json.dumps([dataclasses.asdict(config), num_shards], sort_keys=True).encode())
  for u in utts:
    st = os.stat(u.audio_path) if u.audio_path else None
    h.update(json.dumps([u.id, os.path.relpath(u.audio_path, src) if u.audio_path else None,
                         st.st_size if st else None, st.st_mtime_ns if st else None,
                         u.transcript, u.transcript_error, u.paired_dir, u.speaker]).encode())
  return h.hexdigest()


def _fingerprint_path(stats_path: str) -> str:
  """Hidden next to the stats (mtimes differ between builds; the stats stay byte-identical)."""
  head, tail = os.path.split(stats_path)
  return os.path.join(head, "." + tail.replace(".json", ".fingerprint"))


def _finished_with(stats_path: str, path: str) -> Optional[str]:
  """The fingerprint recorded for a finished shard, "" for an old one without; None: unfinished."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gfile = _gfile()
  if not (gfile.exists(path) and gfile.exists(stats_path)):
    return None
  try:
    with gfile.GFile(_fingerprint_path(stats_path)) as f:
      return f.read().strip()
  except tf.errors.NotFoundError:
    return ""


def _gfile():
  """tf.io.gfile: the output directory may be local or a bucket (gs://) on Beam runners."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


@dataclasses.dataclass
class ShardPlan:
  """What one output shard is made of, decided once by whoever launches the preparation.

  utterances: this shard's utterances (number i of the sorted corpus goes to shard i % N).
  corpus_events: corpus-level findings (malformed lines, duplicate ids, skipped files), counted
    with shard 0 only.
  src: the corpus root (audio paths are fingerprinted relative to it).
  """
  shard: int
  num_shards: int
  utterances: List[layout.Utterance]
  corpus_events: List[Event]
  src: str

  def fingerprint(self, config: "PrepareConfig") -> str:
    """Of this shard's inputs and settings (see `fingerprint`), computed where the shard is
    written, so the launcher never stats the whole corpus. Shard 0 also covers the skipped
    files it counts: adding or removing one redoes it."""
    skipped = [layout.Utterance(e.where, None, None, "") for e in self.corpus_events
               if e.reason == "skipped_file"]
    return fingerprint(self.utterances + skipped, config, self.num_shards, self.src)

  def to_json(self) -> Dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: Dict) -> "ShardPlan":
    return cls(d["shard"], d["num_shards"], [layout.Utterance(**u) for u in d["utterances"]],
               [Event(**e) for e in d["corpus_events"]], d["src"])


def plan_shards(src: str, config: PrepareConfig, num_shards: Optional[int] = None,
                utterances_per_shard: int = 256) -> List[ShardPlan]:
  """Scans `src` and splits it into shard plans (num_shards: default ceil(utterances / 256))."""
  scan = layout.scan(src)
  utts = scan.utterances
  if not utts:
    logging.warning("prepare: %s holds no utterances (no audio and no transcript files%s): the "
                    "shards will be empty", src,
                    f"; {len(scan.skipped_files)} other files" if scan.skipped_files else "")
  if num_shards is None:
    num_shards = max(1, math.ceil(len(utts) / utterances_per_shard))
  corpus_events = (
      [Event("malformed_transcript_line", f"{file}:{number}", line, True)
       for file, number, line in scan.malformed_lines]
      + [Event("duplicate_id", uid, "id seen twice", False) for uid in scan.duplicate_ids]
      + [Event("skipped_file", file, "neither audio (by content) nor *.trans.txt", True)
         for file in scan.skipped_files])
  # Shard 0 also counts the corpus-level findings, so they are part of its inputs.
  return [ShardPlan(shard, num_shards, utts[shard::num_shards],
                    corpus_events if shard == 0 else [], src)
          for shard in range(num_shards)]


def write_shard(plan: ShardPlan, config: PrepareConfig, out_dir: str, split: str,
                overwrite: bool = False, processed: Optional[Callable] = None
                ) -> Optional[Dict]:
  """Writes one shard, its stats and its fingerprint; returns the stats (None: already done).

  Idempotent (what Beam's retries need): the shard is written to a temporary name and renamed
  into place, the stats and fingerprint follow, and a rerun skips a shard whose recorded
  fingerprint matches. `processed(utterances)` yields (records, events) per utterance (default:
  here, one at a time).
  """
  gfile = _gfile()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = shard_path(out_dir, split, plan.shard, plan.num_shards)
  stats_path = _stats_path(out_dir, split, plan.shard, plan.num_shards)
  recorded = _finished_with(stats_path, path)
  digest = plan.fingerprint(config)
  if not overwrite and recorded is not None:
    if recorded == digest:
      return None
    logging.warning("prepare: %s was made from other inputs or settings (fingerprint %s, now "
                    "%s): redoing it", path, recorded[:12] or "none", digest[:12])
  gfile.makedirs(os.path.dirname(stats_path))
  stats = Stats(config.max_logged)
  for event in plan.corpus_events:
    stats.add(event)
  if processed is None:
    checker = _make_checker(config)
    processed = lambda utts: (process_utterance(u, config, checker) for u in utts)
  tmp = os.path.join(out_dir, f".{os.path.basename(path)}.tmp")
  with tf.io.TFRecordWriter(tmp) as writer:
    for records, events in processed(plan.utterances):
      stats.seen += 1
      for e in events:
        stats.add(e)
      for r in records:
        writer.write(serialize(r))
        stats.written += 1
        stats.paired += bool(r.transcript)
        stats.seconds += r.audio.shape[0] / types.SAMPLE_RATE
  gfile.rename(tmp, path, overwrite=True)
  with gfile.GFile(stats_path, "w") as f:
    json.dump(stats.to_json(), f, indent=1)
  with gfile.GFile(_fingerprint_path(stats_path), "w") as f:
    f.write(digest)
  return stats.to_json()


def completion_marker(out_dir: str, split: str) -> str:
  """Written by `write_summary` when every shard of `split` is done; removed when a run starts."""
  return os.path.join(out_dir, f"{split}.COMPLETED")


def start(out_dir: str, split: str) -> None:
  """Marks `split` as in progress: the completion marker of an earlier run is removed."""
  gfile = _gfile()
  gfile.makedirs(os.path.join(out_dir, "stats"))
  if gfile.exists(completion_marker(out_dir, split)):
    gfile.remove(completion_marker(out_dir, split))


def prepare(src: str, out_dir: str, split: str, config: PrepareConfig = PrepareConfig(),
            num_shards: Optional[int] = None, process_index: int = 0, num_processes: int = 1,
            workers: int = 1, overwrite: bool = False,
            utterances_per_shard: int = 256) -> Dict:
  """Prepares this process's shards of `src` into `out_dir`; returns the merged summary."""
  if not 0 <= process_index < num_processes:
    raise ValueError(f"process_index={process_index} must be in [0, {num_processes})")
  plans = plan_shards(src, config, num_shards, utterances_per_shard)
  start(out_dir, split)
  pool = None
  if workers > 1:
    import concurrent.futures  # pylint: disable=g-import-not-at-top
    import multiprocessing  # pylint: disable=g-import-not-at-top
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
        initargs=(config,))
  try:
    for plan in plans[process_index::num_processes]:
      write_shard(plan, config, out_dir, split, overwrite,
                  None if pool is None else lambda u: pool.map(_worker_process, u, chunksize=4))
  finally:
    if pool is not None:
      pool.shutdown()
  return write_summary(out_dir, split, len(plans), config.max_logged, src)


def write_summary(out_dir: str, split: str, num_shards: int, max_logged: int = 5,
                  src: str = "") -> Dict:
  """Sums the per-shard stats present into SPLIT.summary.json; returns it.

  When every shard is done, also writes the completion marker SPLIT.COMPLETED (the summary's
  totals), which readers and schedulers can wait for.
  """
  gfile = _gfile()
  total = Stats(max_logged)
  done = 0
  for shard in range(num_shards):
    path = _stats_path(out_dir, split, shard, num_shards)
    if gfile.exists(path):
      with gfile.GFile(path) as f:
        total.merge(json.load(f))
      done += 1
  warnings = []
  if done == num_shards and total.seen == 0:
    warnings.append(f"no utterances found under {src or 'the source'}: check --src")
  elif done == num_shards and total.written == 0:
    warnings.append("no example was written: every utterance was dropped (see counts)")
  for w in warnings:
    logging.warning("prepare: split %r: %s", split, w)
  summary = dict(total.to_json(), split=split, source=os.path.abspath(src) if src else "",
                 shards_done=done, num_shards=num_shards, reasons=REASONS, warnings=warnings)
  with gfile.GFile(os.path.join(out_dir, f"{split}.summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  if done == num_shards:
    with gfile.GFile(completion_marker(out_dir, split), "w") as f:
      json.dump({k: summary[k] for k in ("split", "num_shards", "utterances_seen",
                                         "examples_written", "hours_written")}, f, indent=1)
  return summary


def add_flags(parser: argparse.ArgumentParser, multi_process: bool = True) -> None:
  """prepare's command-line flags (shared with prepare_beam); PrepareConfig fields by name."""
  parser.add_argument("--src", required=True, help="LibriSpeech-layout directory")
  parser.add_argument("--out", required=True, help="cache directory for the TFRecords")
  parser.add_argument("--split", required=True, help="split name used in the file names")
  parser.add_argument("--num_shards", type=int, default=None,
                      help="total shards (default: ceil(utterances / 256))")
  if multi_process:
    parser.add_argument("--process_index", type=int, default=0)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes")
  parser.add_argument("--overwrite", action="store_true")
  parser.add_argument("--gin_file", action="append", default=[])
  parser.add_argument("--gin", action="append", default=[], help="gin binding, e.g. "
                      "'PrepareConfig.max_seconds=20'")
  defaults = PrepareConfig()
  for field in dataclasses.fields(PrepareConfig):
    default = getattr(defaults, field.name)
    if field.type is bool:
      parser.add_argument(f"--{field.name}", action="store_true", default=None)
    else:
      kind = field.type if field.type in (int, float) else str
      parser.add_argument(f"--{field.name}", default=None, type=kind,
                          help=f"default {default!r}")


def config_from_flags(args: argparse.Namespace) -> PrepareConfig:
  """gin files and bindings first, then the PrepareConfig flags given on the command line."""
  if args.gin_file or args.gin:
    gin.parse_config_files_and_bindings(args.gin_file, args.gin, finalize_config=False)
  overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(PrepareConfig)
               if getattr(args, f.name) is not None}
  return dataclasses.replace(PrepareConfig(), **overrides)


def short_summary(summary: Dict) -> Dict:
  """What the command line prints at the end."""
  return {k: summary[k] for k in ("split", "utterances_seen", "examples_written",
                                  "hours_written", "counts", "shards_done", "num_shards")}


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_flags(parser)
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  config = config_from_flags(args)
  summary = prepare(args.src, args.out, args.split, config, num_shards=args.num_shards,
                    process_index=args.process_index, num_processes=args.num_processes,
                    workers=args.workers, overwrite=args.overwrite)
  print(json.dumps(short_summary(summary), indent=1))


if __name__ == "__main__":
  main()
