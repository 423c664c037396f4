r"""`python -m slam_jax.bench --mode=infer`: CTC inference speed and one fine-tuning step.

  python -m slam_jax.bench --mode=infer [--preset=tiny|base|600m] [--batch=8] [--seconds=10]
      [--steps=5] [--vocab=1024] [--peer] [--json=OUT]

Ours: `CtcAsrModel.predict` (encoder over the speech slot + CTC head, argmax) jitted, median
over `steps` after warm-up: audio-seconds per second and real-time factor (compute seconds per
audio second, < 1 = faster than real time); and one fine-tuning step (forward + backward + the
fine-tuning AdamW) of the same model. Peer (`--peer`, needs the `bench` extra: torch,
transformers): Hugging Face `Wav2Vec2ConformerForCTC` with the same width, heads, FFN, kernel and
total Conformer depth (speech + shared layers), fed raw 16 kHz audio (its conv front end, 20 ms
frames; ours is log-mel + 4x conv subsampling, 40 ms frames), eval-mode forward and one
training step with torch.optim.AdamW. fp32, all CPU cores.
"""

import json
import statistics
import sys
import time
from typing import Dict, Sequence

import jax
import numpy as np

from slam_jax import partitioning
from slam_jax import trainer as trainer_lib
from slam_jax import types
from slam_jax.bench import peer as peer_lib
from slam_jax.finetune import ctc
from slam_jax.finetune import train as finetune_lib
from slam_jax.models import encoder as encoder_lib


class _Vocab:
  def __init__(self, size):
    self.vocab_size = size

  def decode(self, ids):
    return " ".join(map(str, ids))


def _median_seconds(fn, steps: int) -> float:
  fn()  # compile / warm up
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bench_ours(config: encoder_lib.EncoderConfig, batch: int, seconds: float, steps: int,
               vocab: int) -> Dict[str, float]:
  frames, length = int(seconds * 100), max(int(seconds * 3), 2)
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, vocab, size=(batch, length)).astype(np.int32)
  data = {types.SPEECH_FEATURES: rng.normal(size=(batch, frames, 80)).astype(np.float32),
          types.SPEECH_MASK: np.ones((batch, frames), np.int32), types.TEXT_TOKENS: tokens,
          types.TEXT_SEGMENT_IDS: np.ones_like(tokens), types.TEXT_POSITIONS:
              np.tile(np.arange(length, dtype=np.int32), (batch, 1)),
          types.KIND: np.full((batch,), types.KIND_PAIRED, np.int32)}
  model = ctc.CtcAsrModel(config, _Vocab(vocab))
  params = jax.jit(lambda k: partitioning.unbox(model.init(k, data)))(jax.random.PRNGKey(0))
  predict = jax.jit(model.predict)
  infer_s = _median_seconds(lambda: jax.block_until_ready(predict(params, data)), steps)
  tx, _ = finetune_lib.make_finetune_optimizer(finetune_lib.FinetuneOptimizerConfig(), 1000)
  state = trainer_lib.init_train_state(params, tx)
  step = jax.jit(trainer_lib.make_train_step(model.loss_fn, tx, 0))
  holder = {"state": state}

  def train_once():
    holder["state"], metrics = step(holder["state"], data)
    jax.block_until_ready(metrics["loss"])

  train_s = _median_seconds(train_once, steps)
  audio = batch * seconds
  return {"infer_s": infer_s, "audio_s_per_s": audio / infer_s, "rtf": infer_s / audio,
          "finetune_step_s": train_s}


def bench_peer(config: encoder_lib.EncoderConfig, batch: int, seconds: float, steps: int,
               vocab: int) -> Dict[str, float]:
  torch = peer_lib._setup_torch(None, 0)  # pylint: disable=protected-access
  from transformers import Wav2Vec2ConformerForCTC  # pylint: disable=g-import-not-at-top
  hf_config = peer_lib._conformer_config(  # pylint: disable=protected-access
      config, config.num_speech_layers + config.num_shared_layers, 0.0, int(seconds * 50),
      "sdpa", vocab_size=vocab, pad_token_id=0, ctc_loss_reduction="mean")
  model = Wav2Vec2ConformerForCTC(hf_config)
  audio = torch.randn(batch, int(seconds * peer_lib.SAMPLE_RATE))
  labels = torch.randint(3, vocab, (batch, max(int(seconds * 3), 2)))
  model.eval()

  def infer():
    with torch.no_grad():
      model(audio).logits.argmax(-1)

  infer_s = _median_seconds(infer, steps)
  model.train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

  def train_once():
    opt.zero_grad()
    model(audio, labels=labels).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

  train_s = _median_seconds(train_once, steps)
  total = batch * seconds
  return {"infer_s": infer_s, "audio_s_per_s": total / infer_s, "rtf": infer_s / total,
          "finetune_step_s": train_s}


def main(argv: Sequence[str]) -> Dict[str, Dict[str, float]]:
  opts = {"preset": "tiny", "batch": "8", "seconds": "10", "steps": "5", "vocab": "1024"}
  run_peer, out = False, None
  for arg in argv:
    key, _, value = arg.lstrip("-").partition("=")
    if key == "mode":
      continue
    if key == "peer":
      run_peer = True
    elif key == "json":
      out = value
    elif key in opts and value:
      opts[key] = value
    else:
      raise ValueError(f"Unknown flag {arg!r} for --mode=infer: --preset= --batch= --seconds= "
                       "--steps= --vocab= --peer --json=")
  config = encoder_lib.get_preset(opts["preset"], dropout_rate=0.0)
  args = (config, int(opts["batch"]), float(opts["seconds"]), int(opts["steps"]),
          int(opts["vocab"]))
  results = {"slam_jax": bench_ours(*args)}
  ok, why = peer_lib.available()
  if run_peer and ok:
    results["hf_wav2vec2_conformer_ctc"] = bench_peer(*args)
  elif run_peer:
    print(why)
  print(f"CTC inference, preset {opts['preset']}, batch {opts['batch']} x {opts['seconds']} s:")
  for name, r in results.items():
    print(f"  {name:28s} {r['audio_s_per_s']:9.1f} audio-s/s  RTF {r['rtf']:.4f}  "
          f"fine-tuning step {r['finetune_step_s']:.3f} s")
  if out:
    with open(out, "w") as f:
      json.dump({"options": opts, "results": results}, f, indent=1)
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
