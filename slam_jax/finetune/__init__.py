"""Downstream fine-tuning: models over the pre-trained encoder, partial restore, the loop.

  task_model.py   DownstreamModel: the interface every downstream model implements
  restore.py      restore_encoder_params: the encoder's params out of a pre-training checkpoint
  ctc.py          CTC ASR (loss, greedy and prefix beam search decoding, CtcAsrModel)
  classifier.py   pooled text classifier (ClassifierModel)
  seq2seq.py      attention encoder-decoder for ST / attention ASR (Seq2SeqModel, decoder.py)
  st_metrics.py   BLEU and chrF (sacrebleu) for translation
  specaugment.py  SpecAugment-style input masking for fine-tuning
  retrieval.py    speech<->text retrieval R@k from a pre-trained checkpoint (STM head, cosine)
  train.py        the fine-tuning loop (`python -m slam_jax.finetune`)
"""
