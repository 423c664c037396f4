"""The PyTorch peer of `python -m slam_jax.bench --peer`: HF transformers' Wav2Vec2-Conformer.

Two steps, each forward + backward + clip-by-global-norm + `torch.optim.AdamW` (the same update our
step does), fp32, on every CPU core (`torch.set_num_threads`), after warm-up:

* encoder: `Wav2Vec2ConformerEncoder` (relative position embeddings,
  `position_embeddings_type="relative"`) fed [batch, frames, dim] hidden states directly (the
  inputs_embeds-style entry point), loss = mean of squared outputs, as our 'encoder' mode.
* pretrain: `Wav2Vec2ConformerForPreTraining` from raw 16 kHz waveform, with `mask_time_indices`
  and `sampled_negative_indices` drawn as its documentation does (`_compute_mask_indices`,
  `_sample_negative_indices`, once, outside the timed region), loss = its contrastive + diversity
  loss.

torch and transformers are optional (`pip install -e .[bench]`); without them `available()` says
why and the benchmark skips the peer with that message.
"""

import os
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

SAMPLE_RATE = 16000
HOP_SAMPLES = 160  # one 10 ms log-mel frame


def available() -> Tuple[bool, str]:
  """(True, versions) when torch and transformers import, else (False, the reason)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return False, (f"PyTorch peer skipped: {e}. Install the optional extra "
                   "(`pip install -e .[bench]`: torch, transformers) to compare against it.")
  return True, f"torch {torch.__version__}, transformers {transformers.__version__}"


def _hf_module():
  from transformers.models.wav2vec2_conformer import modeling_wav2vec2_conformer  # pylint: disable=g-import-not-at-top
  return modeling_wav2vec2_conformer


def _setup_torch(threads: Optional[int], seed: int):
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads or os.cpu_count() or 1)
  torch.manual_seed(seed)
  return torch


def _conformer_config(dims, num_layers: int, dropout: float, max_positions: int,
                      attn_implementation: str, **extra):
  from transformers import Wav2Vec2ConformerConfig  # pylint: disable=g-import-not-at-top
  config = Wav2Vec2ConformerConfig(
      hidden_size=dims.model_dim, num_hidden_layers=num_layers,
      num_attention_heads=dims.num_heads, intermediate_size=dims.ffn_dim,
      conv_depthwise_kernel_size=dims.conv_kernel_size, position_embeddings_type="relative",
      hidden_act="swish", hidden_dropout=dropout, attention_dropout=dropout,
      activation_dropout=dropout, conformer_conv_dropout=dropout, feat_proj_dropout=dropout,
      feat_quantizer_dropout=dropout, final_dropout=dropout, layerdrop=0.0,
      max_source_positions=max(max_positions, 5000), **extra)
  # A bare encoder (no PreTrainedModel around it) would otherwise fall back to eager attention.
  config._attn_implementation = attn_implementation  # pylint: disable=protected-access
  return config


def _adamw(torch, params, optimizer):
  return torch.optim.AdamW(params, lr=optimizer.learning_rate, betas=(optimizer.b1, optimizer.b2),
                           eps=optimizer.eps, weight_decay=optimizer.weight_decay)


def _time_steps(step, warmup: int, steps: int) -> Tuple[List[float], List[float]]:
  """Wall and process-CPU seconds of `steps` calls after `warmup` untimed ones."""
  for _ in range(warmup):
    step()
  walls, cpus = [], []
  for _ in range(steps):
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return walls, cpus


def _time_training(torch, module, config, optimizer, loss_fn, warmup: int, steps: int,
                   **fields) -> Dict:
  """Times AdamW train steps of `module` on `loss_fn()`; the result dict both peers report.

  One step: zero grads, `loss_fn().backward()`, global-norm clipping (if configured), AdamW.
  """
  params = [p for p in module.parameters() if p.requires_grad]
  opt = _adamw(torch, params, optimizer)

  def step():
    opt.zero_grad(set_to_none=True)
    loss_fn().backward()
    if optimizer.clip_norm > 0:
      torch.nn.utils.clip_grad_norm_(params, optimizer.clip_norm)
    opt.step()

  times, cpus = _time_steps(step, warmup, steps)
  return dict({"step_times_s": times, "cpu_times_s": cpus,
               "median_step_s": float(np.median(times)),
               "num_params": int(sum(p.numel() for p in module.parameters())),
               "attn_implementation": getattr(config, "_attn_implementation", None),
               "torch_threads": torch.get_num_threads()}, **fields)


def encoder_step_times(dims, num_layers: int, batch: int, frames: int, optimizer, *,
                       warmup: int, steps: int, dropout: float = 0.0,
                       threads: Optional[int] = None, seed: int = 0,
                       attn_implementation: str = "sdpa") -> Dict:
  """Step times of the HF Conformer encoder stack (see module docstring)."""
  torch = _setup_torch(threads, seed)
  hf = _hf_module()
  config = _conformer_config(dims, num_layers, dropout, frames, attn_implementation)
  encoder = hf.Wav2Vec2ConformerEncoder(config).train()
  hidden = torch.randn(batch, frames, dims.model_dim)
  return _time_training(
      torch, encoder, config, optimizer,
      lambda: encoder(hidden.clone()).last_hidden_state.square().mean(), warmup, steps,
      what=("transformers Wav2Vec2ConformerEncoder (relative positions, unclipped), "
            "hidden states in, fwd+bwd+clip+AdamW, fp32"))


def pretrain_step_times(dims, num_layers: int, batch: int, seconds: float, optimizer, *,
                        mask_prob: float, mask_length: int, num_negatives: int,
                        warmup: int, steps: int, dropout: float = 0.0,
                        threads: Optional[int] = None, seed: int = 0,
                        attn_implementation: str = "sdpa", codebook_groups: int = 2,
                        codebook_entries: int = 320, code_dim: int = 256) -> Dict:
  """Step times of HF `Wav2Vec2ConformerForPreTraining` on `batch` x `seconds` of raw audio."""
  torch = _setup_torch(threads, seed)
  hf = _hf_module()
  samples = int(round(seconds * SAMPLE_RATE))
  config = _conformer_config(
      dims, num_layers, dropout, samples // 320 + 1, attn_implementation,
      mask_time_prob=mask_prob, mask_time_length=mask_length, num_negatives=num_negatives,
      num_codevector_groups=codebook_groups, num_codevectors_per_group=codebook_entries,
      codevector_dim=code_dim, proj_codevector_dim=code_dim)
  model = hf.Wav2Vec2ConformerForPreTraining(config).train()
  rng = np.random.default_rng(seed)
  waveform = torch.tensor(rng.standard_normal((batch, samples)).astype(np.float32) * 0.1)
  frames = int(model._get_feat_extract_output_lengths(samples))  # pylint: disable=protected-access
  mask_length = max(1, min(mask_length, frames // 2))  # HF requires span < frames (tiny configs)
  mask = hf._compute_mask_indices(  # pylint: disable=protected-access
      (batch, frames), mask_prob=mask_prob, mask_length=mask_length, min_masks=2)
  from transformers.models.wav2vec2 import modeling_wav2vec2  # pylint: disable=g-import-not-at-top
  negatives = modeling_wav2vec2._sample_negative_indices(  # pylint: disable=protected-access
      (batch, frames), num_negatives, mask_time_indices=mask)
  mask = torch.tensor(mask, dtype=torch.long)
  negatives = torch.tensor(negatives, dtype=torch.long)

  return _time_training(
      torch, model, config, optimizer,
      lambda: model(waveform, mask_time_indices=mask, sampled_negative_indices=negatives).loss,
      warmup, steps, encoder_frames=frames,
      audio_seconds_per_step=batch * samples / SAMPLE_RATE,
      what=("transformers Wav2Vec2ConformerForPreTraining from raw waveform "
            "(conv feature encoder, Conformer, Gumbel quantizer, contrastive + diversity "
            "loss), fwd+bwd+clip+AdamW, fp32"))


def matmul_peak(size: int = 2048, repeats: int = 5, threads: Optional[int] = None) -> float:
  """torch's fp32 matmul FLOP/s on this CPU (the same measurement as the JAX peak)."""
  torch = _setup_torch(threads, 0)
  a = torch.randn(size, size)
  b = torch.randn(size, size)
  a @ b
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - start)
  return 2.0 * size ** 3 / float(np.median(times))
