"""The LibriSpeech directory layout: write it (demo corpus) and scan it (any corpus).

    ROOT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac     (or .wav; any nesting depth is accepted)
    ROOT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt     one "UTTERANCE_ID TRANSCRIPT" per line

Libri-Light has the audio without transcript files; a text-only set has transcript files
without audio. The utterance id is the audio file name without extension; the speaker is the
first path component under ROOT. Audio is recognised by content (`audio.sniff`), not by
extension: an MP3 named .flac is audio, a README is not; every other file is counted in
`ScanResult.skipped_files`. Transcript files may start with a UTF-8 byte-order mark.
"""

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from slam_jax.data import audio as audio_lib

TRANSCRIPT_SUFFIX = ".trans.txt"


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One entry of a scanned corpus.

  Attributes:
    id: utterance id (file stem, e.g. "103-1240-0000").
    audio_path: the audio file, or None for transcript-only entries.
    transcript: the transcript (may be ""), or None when the corpus has none for this id.
    speaker: first directory under the root ("" for files directly in it).
    transcript_error: why the transcript line of this id could not be read ("" if none).
    paired_dir: the audio's directory holds a transcript file (so a missing line is a lost
      pairing, not an audio-only corpus).
  """
  id: str
  audio_path: Optional[str]
  transcript: Optional[str]
  speaker: str
  transcript_error: str = ""
  paired_dir: bool = False


@dataclasses.dataclass
class ScanResult:
  utterances: List[Utterance]
  malformed_lines: List[Tuple[str, int, str]]  # (file, line number, line)
  duplicate_ids: List[str]  # Audio stems or transcript ids seen twice.
  skipped_files: List[str] = dataclasses.field(default_factory=list)  # Neither audio nor text.


def _walk_sorted(root: str) -> Iterable[Tuple[str, List[str]]]:
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    yield dirpath, sorted(filenames)


def read_transcripts(path: str, bad_ids: Optional[Dict[str, str]] = None
                     ) -> Tuple[Dict[str, str], List[Tuple[str, int, str]]]:
  """Parses one *.trans.txt: ({id: text}, malformed lines). A line with only an id -> "".

  A byte-order mark on the first line is dropped. The id of a line that is not UTF-8 (when its
  id itself is ASCII) goes into `bad_ids` {id: reason}, so its audio can be counted.
  """
  out: Dict[str, str] = {}
  malformed = []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
      except UnicodeDecodeError:
        malformed.append((path, number, repr(raw[:80])))
        head = raw.lstrip(b"\xef\xbb\xbf").split(maxsplit=1)
        if head and bad_ids is not None:
          try:
            bad_ids[head[0].decode("ascii")] = f"its line {path}:{number} is not UTF-8"
          except UnicodeDecodeError:
            pass
        continue
      if not line.strip():
        continue
      parts = line.strip().split(maxsplit=1)
      out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
  return out, malformed


def scan(root: str) -> ScanResult:
  """Finds audio files and transcripts under `root`, joined by utterance id (sorted by id)."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{root}: not a directory (expected a LibriSpeech-layout corpus)")
  audio: Dict[str, str] = {}
  speakers: Dict[str, str] = {}
  transcripts: Dict[str, str] = {}
  malformed: List[Tuple[str, int, str]] = []
  duplicates: List[str] = []
  skipped: List[str] = []
  bad_ids: Dict[str, str] = {}
  paired_dirs = set()
  for dirpath, filenames in _walk_sorted(root):
    rel = os.path.relpath(dirpath, root)
    speaker = "" if rel == "." else rel.split(os.sep)[0]
    if any(n.endswith(TRANSCRIPT_SUFFIX) for n in filenames):
      paired_dirs.add(dirpath)
    for name in filenames:
      path = os.path.join(dirpath, name)
      if name.endswith(TRANSCRIPT_SUFFIX):
        found, bad = read_transcripts(path, bad_ids)
        malformed.extend(bad)
        for uid, text in found.items():
          if uid in transcripts:
            duplicates.append(uid)
          transcripts[uid] = text
          speakers.setdefault(uid, speaker)
        continue
      stem, ext = os.path.splitext(name)
      if ext.lower() in audio_lib.SUPPORTED_EXTENSIONS or audio_lib.sniff(path):
        if stem in audio:
          # Same file name in two directories (possible in Libri-Light): keep both, the later
          # one under its relative path.
          duplicates.append(stem)
          stem = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "-")
        audio[stem] = path
        speakers[stem] = speaker
      else:
        skipped.append(path)
  ids = sorted(set(audio) | set(transcripts))
  utterances = [Utterance(id=i, audio_path=audio.get(i), transcript=transcripts.get(i),
                          speaker=speakers.get(i, ""), transcript_error=bad_ids.get(i, ""),
                          paired_dir=i in audio and os.path.dirname(audio[i]) in paired_dirs)
                for i in ids]
  return ScanResult(utterances=utterances, malformed_lines=malformed, duplicate_ids=duplicates,
                    skipped_files=skipped)


def utterance_id(speaker: int, chapter: int, index: int) -> str:
  return f"{speaker}-{chapter}-{index:04d}"


def write_chapter(root: str, speaker: int, chapter: int, transcripts: Optional[Sequence[str]],
                  waveforms: Optional[Sequence[np.ndarray]] = None, sample_rate: int = 16000,
                  audio_format: str = "FLAC") -> List[str]:
  """Writes one chapter: audio files (int16 [n] each) and/or the transcript file; returns ids.

  Transcripts are written upper-case, as in LibriSpeech.
  """
  import soundfile  # pylint: disable=g-import-not-at-top
  n = len(transcripts) if transcripts is not None else len(waveforms)
  chapter_dir = os.path.join(root, str(speaker), str(chapter))
  os.makedirs(chapter_dir, exist_ok=True)
  ids = [utterance_id(speaker, chapter, i) for i in range(n)]
  if waveforms is not None:
    ext = ".flac" if audio_format == "FLAC" else ".wav"
    for uid, wav in zip(ids, waveforms):
      soundfile.write(os.path.join(chapter_dir, uid + ext), np.asarray(wav, np.int16),
                      sample_rate, subtype="PCM_16", format=audio_format)
  if transcripts is not None:
    path = os.path.join(chapter_dir, f"{speaker}-{chapter}{TRANSCRIPT_SUFFIX}")
    with open(path, "w", encoding="utf-8") as f:
      for uid, text in zip(ids, transcripts):
        f.write(f"{uid} {text.upper()}\n")
  return ids
