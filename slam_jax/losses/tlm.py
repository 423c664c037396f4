"""Translation language modelling (XLM's TLM, applied by SLAM to speech-text pairs).

A paired row holds speech and its transcript, both masked, concatenated in the shared stack; the
model predicts the masked text tokens and the masked frames' quantizer ids, using context from both
modalities. The loss is the text mean plus the speech mean (each modality counts equally, whatever
its number of masked positions). Only rows whose transcript matches their speech are scored (the STM
negatives are not).
"""

from typing import Dict, Tuple

import jax.numpy as jnp

from slam_jax.losses import mlm


def tlm_loss(text_logits: jnp.ndarray, text_targets: jnp.ndarray, text_mask: jnp.ndarray,
             speech_logits: jnp.ndarray, speech_ids: jnp.ndarray,
             speech_mask: jnp.ndarray, text_normaliser=None,
             speech_normaliser=None) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """TLM on paired rows.

  Args:
    text_logits: [B, L, V]; text_targets: int [B, L]; text_mask: bool [B, L] scored tokens.
    speech_logits: [B, T, G, V']; speech_ids: int [B, T, G]; speech_mask: bool [B, T] scored frames.
    (Masks are already restricted to matched paired rows.)
    text_normaliser, speech_normaliser: what each modality's sums are divided by (default: its
      scored tokens / frames).

  Returns:
    (text loss + speech loss, metrics {loss, text_loss, text_accuracy, text_count, speech_loss,
    speech_accuracy, speech_count}).
  """
  text_loss, text = mlm.text_mlm_loss(text_logits, text_targets, text_mask,
                                         text_normaliser)
  speech_loss, speech = mlm.speech_mlm_loss(speech_logits, speech_ids, speech_mask,
                                                 speech_normaliser)
  loss = text_loss + speech_loss
  metrics = {"loss": loss}
  metrics.update({f"text_{k}": v for k, v in text.items()})
  metrics.update({f"speech_{k}": v for k, v in speech.items()})
  return loss, metrics
