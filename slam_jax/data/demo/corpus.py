"""Build the offline demo corpus: text-only, speech-only and paired English, no network.

  python -m slam_jax.data.demo --out DIR [--seed 0] [--size small|tiny] [--workers 2]

Writes, for split in {train, validation}:
  DIR/text/SPLIT/DOC/CHAPTER/DOC-CHAPTER.trans.txt        text-only set (transcript files only)
  DIR/speech/SPLIT/SPEAKER/CHAPTER/*.flac                  speech-only set (no transcripts)
  DIR/paired/SPLIT/SPEAKER/CHAPTER/*.flac + *.trans.txt    paired set
  DIR/vocab/spm.model                                     SentencePiece trained on text/train
  DIR/st/SPLIT.tsv, DIR/vocab/spm_target.model            speech translation: id, English,
                                                          target language (target_language.py)
  DIR/prepared/{speech,paired}/SPLIT.tfrecord-*           what the seqio tasks read
  DIR/manifest.json, DIR/README.md                        counts, hours, settings, build time

Sentences come from `grammar.Grammar` (one distribution for all three sets); speech is eSpeak NG
(`espeak.Synthesizer`) at 22050 Hz resampled to 16 kHz, one synthetic speaker per
(voice + variant, rate, pitch). Validation speakers are disjoint from training speakers.

Sizes: `small` (default) = 50k text sentences, 2000 + 400 speech-only and 2000 + 400 paired
utterances (about 1.45 h + 0.29 h each, 48 speakers), 1023-piece vocabulary; it built in 1 min
45 s with 2 workers on 2 shared CPU cores (most of it synthesis) and takes ~650 MB (FLAC +
prepared int16 TFRecords). `tiny` (tests) builds in a few seconds.

Determinism: eSpeak keeps hidden global state between calls, so each group of speakers
(`speakers_per_job`) is synthesised in a fresh process (spawn, one task per child) in a fixed
order; with that, the same seed gives byte-identical files whatever the worker count.
"""

import argparse
import dataclasses
import json
import multiprocessing
import os
import random
import shutil
import time
from typing import Dict, List, Optional, Sequence

from slam_jax import types
from slam_jax.data import audio as audio_lib
from slam_jax.data.demo import espeak
from slam_jax.data.demo import grammar as grammar_lib
from slam_jax.data.demo import target_language
from slam_jax.data import layout

SPLITS = ("train", "validation")

_BASE_VOICES = ("en-us", "en", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclasses.dataclass(frozen=True)
class CorpusSize:
  """How much to build.

  Attributes:
    text_sentences: text-only sentences per split (train, validation).
    speakers: speakers per split (train, validation), for each of the speech and paired sets.
    chapters_per_speaker: chapters per speaker.
    utterances_per_chapter: utterances per chapter.
    text_sentences_per_chapter: sentences per text-only "chapter" file.
    vocab_size: SentencePiece pieces (PAD/EOS/UNK included; seqio adds 1 extra id).
    num_shards: prepared TFRecord shards per split.
    speakers_per_job: speakers synthesised by one fresh process (part of the determinism
      contract: changing it changes the audio slightly).
  """
  text_sentences: Sequence[int]
  speakers: Sequence[int]
  chapters_per_speaker: int
  utterances_per_chapter: int
  text_sentences_per_chapter: int
  vocab_size: int
  num_shards: int
  speakers_per_job: int = 1


SIZES = {
    "tiny": CorpusSize(text_sentences=(1500, 60), speakers=(3, 1), chapters_per_speaker=1,
                       utterances_per_chapter=4, text_sentences_per_chapter=100,
                       vocab_size=255, num_shards=2, speakers_per_job=4),
    "small": CorpusSize(text_sentences=(50000, 1000), speakers=(20, 4), chapters_per_speaker=2,
                        utterances_per_chapter=50, text_sentences_per_chapter=500,
                        vocab_size=1023, num_shards=4),
}


@dataclasses.dataclass(frozen=True)
class ChapterJob:
  root: str
  speaker: int
  chapter: int
  voice: espeak.Voice
  sentences: Sequence[str]
  with_transcripts: bool


def _rng(seed: int, *parts) -> random.Random:
  return random.Random("/".join([str(seed), *map(str, parts)]))


def make_voices(rng: random.Random, n: int) -> List[espeak.Voice]:
  """`n` distinct synthetic speakers (voice+variant, rate, pitch, pitch range)."""
  combos = [f"{v}+{var}" for v in _BASE_VOICES for var in _VARIANTS]
  names = rng.sample(combos, k=min(n, len(combos)))
  names += [rng.choice(combos) for _ in range(n - len(names))]
  return [espeak.Voice(name=name, rate=rng.randint(135, 205), pitch=rng.randint(25, 75),
                       pitch_range=rng.randint(30, 80)) for name in names]


def _distinct_ints(rng: random.Random, n: int, low: int, high: int, taken: set) -> List[int]:
  out = []
  while len(out) < n:
    x = rng.randint(low, high)
    if x not in taken:
      taken.add(x)
      out.append(x)
  return out


def synthesize_chapters(jobs: Sequence[ChapterJob]) -> List[Dict]:
  """Runs in a fresh process: speaks every sentence of `jobs` in order, writes the chapters."""
  synth = espeak.Synthesizer()
  stats = []
  for job in jobs:
    waves = []
    for text in job.sentences:
      raw = synth.synthesize(text, job.voice)
      wav = audio_lib.resample(audio_lib.int16_to_float(raw), synth.sample_rate,
                               types.SAMPLE_RATE)
      waves.append(audio_lib.float_to_int16(wav))
    layout.write_chapter(job.root, job.speaker, job.chapter,
                         list(job.sentences) if job.with_transcripts else None, waves,
                         sample_rate=types.SAMPLE_RATE)
    stats.append({"utterances": len(waves), "samples": int(sum(w.shape[0] for w in waves))})
  return stats


def _speech_jobs(out: str, name: str, split: str, seed: int, size: CorpusSize,
                 grammar: grammar_lib.Grammar, taken_speakers: set,
                 taken_chapters: set) -> List[ChapterJob]:
  rng = _rng(seed, name, split)
  n_speakers = size.speakers[SPLITS.index(split)]
  voices = make_voices(rng, n_speakers)
  speakers = _distinct_ints(rng, n_speakers, 100, 9999, taken_speakers)
  jobs = []
  for speaker, voice in zip(speakers, voices):
    for chapter in _distinct_ints(rng, size.chapters_per_speaker, 10000, 99999, taken_chapters):
      sentences = grammar.sentences(rng, size.utterances_per_chapter)
      jobs.append(ChapterJob(os.path.join(out, name, split), speaker, chapter, voice,
                             tuple(sentences), with_transcripts=(name == "paired")))
  return jobs


def _write_text_set(out: str, split: str, seed: int, size: CorpusSize,
                    grammar: grammar_lib.Grammar) -> List[str]:
  rng = _rng(seed, "text", split)
  sentences = grammar.sentences(rng, size.text_sentences[SPLITS.index(split)])
  per = size.text_sentences_per_chapter
  for k in range(0, len(sentences), per):
    doc = 1 + k // (per * 10)
    layout.write_chapter(os.path.join(out, "text", split), doc, k // per, sentences[k:k + per])
  return sentences


def build(out: str, seed: int = 0, size_name: str = "small", workers: int = 2,
          overwrite: bool = True) -> Dict:
  """Builds the whole corpus into `out`; returns the manifest."""
  from slam_jax.data import prepare as prepare_lib  # pylint: disable=g-import-not-at-top
  from slam_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  if size_name not in SIZES:
    raise ValueError(f"--size {size_name!r}: choose one of {sorted(SIZES)}")
  size = SIZES[size_name]
  start = time.perf_counter()
  if os.path.exists(out) and overwrite:
    for sub in ("text", "speech", "paired", "vocab", "prepared"):
      shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
  os.makedirs(out, exist_ok=True)
  grammar = grammar_lib.Grammar()
  manifest: Dict = {"seed": seed, "size": size_name, "size_settings": dataclasses.asdict(size),
                    "grammar_word_forms": len(grammar.vocabulary()), "sets": {}}

  text_stats = {}
  train_text: List[str] = []
  for split in SPLITS:
    sentences = _write_text_set(out, split, seed, size, grammar)
    if split == "train":
      train_text = sentences
    text_stats[split] = {"sentences": len(sentences),
                         "words": sum(len(s.split()) for s in sentences),
                         "distinct_words": len(grammar_lib.word_counts(sentences))}
  manifest["sets"]["text"] = text_stats

  vocab_path = vocab_lib.train_sentencepiece(train_text, os.path.join(out, "vocab", "spm"),
                                             vocab_size=size.vocab_size)
  manifest["vocab"] = {"path": os.path.relpath(vocab_path, out),
                       "pieces": vocab_lib._processor(vocab_path).get_piece_size(),  # pylint: disable=protected-access
                       "seqio_extra_ids": vocab_lib.DEFAULT_EXTRA_IDS}
  t_text = time.perf_counter() - start

  taken_speakers, taken_chapters = set(), set()
  jobs = {(name, split): _speech_jobs(out, name, split, seed, size, grammar, taken_speakers,
                                      taken_chapters)
          for name in ("speech", "paired") for split in SPLITS}
  flat = [(key, j) for key, js in jobs.items() for j in js]
  # Group consecutive chapters into process-sized jobs (whole speakers).
  groups: List[List[ChapterJob]] = []
  per_group = size.speakers_per_job * size.chapters_per_speaker
  for key, js in jobs.items():
    groups.extend(list(js[i:i + per_group]) for i in range(0, len(js), per_group))
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(processes=max(1, workers), maxtasksperchild=1) as pool:
    results = [r for rs in pool.map(synthesize_chapters, groups, chunksize=1) for r in rs]
  t_synth = time.perf_counter() - start - t_text

  for name in ("speech", "paired"):
    manifest["sets"][name] = {}
    for split in SPLITS:
      mine = [r for (key, _), r in zip(flat, results) if key == (name, split)]
      samples = sum(r["samples"] for r in mine)
      manifest["sets"][name][split] = {
          "utterances": sum(r["utterances"] for r in mine),
          "hours": round(samples / types.SAMPLE_RATE / 3600.0, 4),
          "speakers": len({j.speaker for j in jobs[(name, split)]}),
          "voices": sorted({f"{j.voice.name} rate={j.voice.rate} pitch={j.voice.pitch}"
                            for j in jobs[(name, split)]}),
      }

  manifest["prepared"] = {}
  for name in ("speech", "paired"):
    config = prepare_lib.PrepareConfig(vocab_path=vocab_path, require_transcript=(name == "paired"),
                                       max_seconds=30.0)
    manifest["prepared"][name] = {}
    for split in SPLITS:
      summary = prepare_lib.prepare(os.path.join(out, name, split),
                                    os.path.join(out, "prepared", name), split, config,
                                    num_shards=size.num_shards, overwrite=True)
      manifest["prepared"][name][split] = {k: summary[k] for k in (
          "examples_written", "hours_written", "counts", "num_shards")}
  t_prepare = time.perf_counter() - start - t_text - t_synth
  manifest["st"] = target_language.write_translations(out, size.vocab_size, SPLITS)
  manifest["build_seconds"] = {"text_and_vocab": round(t_text, 1), "speech": round(t_synth, 1),
                               "prepare": round(t_prepare, 1),
                               "total": round(time.perf_counter() - start, 1)}
  manifest["workers"] = workers
  with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
  with open(os.path.join(out, "README.md"), "w") as f:
    f.write(render_readme(manifest))
  return manifest


def ensure_built(out: str, seed: int = 0, size_name: str = "tiny", workers: int = 2) -> str:
  """Builds the corpus into `out` unless a build with this seed and size is already there."""
  path = os.path.join(out, "manifest.json")
  if os.path.exists(path):
    with open(path) as f:
      manifest = json.load(f)
    if manifest.get("seed") == seed and manifest.get("size") == size_name:
      if "st" not in manifest:  # Built before the translation side existed: add it.
        manifest["st"] = target_language.write_translations(out, SIZES[size_name].vocab_size,
                                                            SPLITS)
        with open(path, "w") as f:
          json.dump(manifest, f, indent=1)
      return out
  build(out, seed, size_name, workers)
  return out


def render_readme(manifest: Dict) -> str:
  """A human-readable summary of `manifest`."""
  lines = [
      "# slam_jax demo corpus",
      "",
      f"Built by `python -m slam_jax.data.demo --out DIR --seed {manifest['seed']} "
      f"--size {manifest['size']}` (offline: grammar sentences, eSpeak NG speech).",
      f"Build time: {manifest['build_seconds']['total']} s with {manifest['workers']} workers.",
      "",
      "| set | split | examples | hours | speakers |",
      "|---|---|---|---|---|",
  ]
  for split, s in manifest["sets"]["text"].items():
    lines.append(f"| text | {split} | {s['sentences']} sentences ({s['words']} words) | - | - |")
  for name in ("speech", "paired"):
    for split, s in manifest["sets"][name].items():
      lines.append(f"| {name} | {split} | {s['utterances']} | {s['hours']} | {s['speakers']} |")
  lines += [
      "",
      f"Vocabulary: `{manifest['vocab']['path']}`, {manifest['vocab']['pieces']} SentencePiece "
      f"pieces (PAD=0, EOS=1, UNK=2) + {manifest['vocab']['seqio_extra_ids']} seqio extra id; "
      f"the grammar has {manifest['grammar_word_forms']} word forms.",
      "",
      "Layout: `text|speech|paired/SPLIT/SPEAKER/CHAPTER/` (LibriSpeech); the seqio tasks "
      "`slam_demo_text`, `slam_demo_speech`, `slam_demo_paired` read `text/` and the TFRecords in "
      "`prepared/`. Counts per preparation step are in `prepared/*/SPLIT.summary.json`.",
      "",
  ]
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--size", default="small", choices=sorted(SIZES))
  parser.add_argument("--workers", type=int, default=2, help="synthesis processes")
  args = parser.parse_args(argv)
  manifest = build(args.out, args.seed, args.size, args.workers)
  print(render_readme(manifest))


if __name__ == "__main__":
  main()
