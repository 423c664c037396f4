"""Writes SLAM encoder embeddings as .npy files.

    python -m slam_jax.embed --checkpoint CKPT --audio a.flac --text "hello world" [--pair]
        [--layer -1] [--out_dir DIR] [--vocab spm.model]

Each --audio (repeatable) gives speech_<i>.frames.npy [T', D] and speech_<i>.pooled.npy [D];
each --text gives text_<i>.frames.npy / .pooled.npy; with --pair, audio i and text i are encoded
together as one [speech; text] row instead: pair_<i>.speech.npy, pair_<i>.text.npy and
pair_<i>.pooled.npy. manifest.json maps every file to its input. Layers: see slam_jax/inference.py.
"""

import argparse
import json
import os
import sys
from typing import Dict, Optional, Sequence

import numpy as np

from slam_jax import inference


def embed(checkpoint: str, audio: Sequence[str] = (), text: Sequence[str] = (),
          pair: bool = False, layer: int = -1, out_dir: str = ".",
          vocab: Optional[str] = None, batch_size: int = 8) -> Dict[str, str]:
  """Embeds the inputs and writes .npy files under out_dir; returns {file name: input}."""
  if not audio and not text:
    raise ValueError("slam_jax.embed: give at least one --audio or --text")
  if pair and len(audio) != len(text):
    raise ValueError(f"slam_jax.embed --pair: {len(audio)} --audio but {len(text)} --text; "
                     f"give them in matching order")
  encoder = inference.Encoder.load(checkpoint, vocab=vocab, batch_size=batch_size)
  os.makedirs(out_dir, exist_ok=True)
  manifest: Dict[str, str] = {}

  def write(name: str, array: np.ndarray, source: str) -> None:
    np.save(os.path.join(out_dir, name), np.asarray(array, np.float32))
    manifest[name] = source

  if pair:
    for i, (a, t, e) in enumerate(zip(audio, text, encoder.embed_pair(list(audio), list(text),
                                                                      layer))):
      write(f"pair_{i}.speech.npy", e.speech.frames, a)
      write(f"pair_{i}.text.npy", e.text.frames, t)
      write(f"pair_{i}.pooled.npy", e.pooled, f"{a} | {t}")
  else:
    if audio:
      for i, (a, e) in enumerate(zip(audio, encoder.embed_speech(list(audio), layer))):
        write(f"speech_{i}.frames.npy", e.frames, a)
        write(f"speech_{i}.pooled.npy", e.pooled, a)
    if text:
      for i, (t, e) in enumerate(zip(text, encoder.embed_text(list(text), layer))):
        write(f"text_{i}.frames.npy", e.frames, t)
        write(f"text_{i}.pooled.npy", e.pooled, t)
  with open(os.path.join(out_dir, "manifest.json"), "w") as f:
    json.dump({"checkpoint": checkpoint, "layer": layer, "files": manifest}, f, indent=2)
  return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m slam_jax.embed", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="encoder checkpoint directory")
  parser.add_argument("--audio", action="append", default=[], help="WAV/FLAC file (repeatable)")
  parser.add_argument("--text", action="append", default=[], help="a sentence (repeatable)")
  parser.add_argument("--pair", action="store_true", help="encode audio i with text i jointly")
  parser.add_argument("--layer", type=int, default=-1, help="hidden state index (-1 = last)")
  parser.add_argument("--out_dir", default=".", help="where the .npy files go")
  parser.add_argument("--vocab", default=None, help="SentencePiece model (default: the "
                      "checkpoint's vocab.model)")
  parser.add_argument("--batch_size", type=int, default=8)
  args = parser.parse_args(argv)
  manifest = embed(args.checkpoint, args.audio, args.text, args.pair, args.layer, args.out_dir,
                   args.vocab, args.batch_size)
  for name in manifest:
    print(os.path.join(args.out_dir, name))
  return 0


if __name__ == "__main__":
  sys.exit(main())
