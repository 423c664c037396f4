"""Downstream fine-tuning: task models on the pre-trained encoder (seq2seq: seq2seq.py)."""
