"""The offline demo corpus: `python -m slam_jax.data.demo --out DIR` (see corpus.py).

grammar.py generates English sentences (and the labels the grammar knows), espeak.py speaks them
with eSpeak NG, corpus.py writes the speech, text, vocabulary and TFRecords. Nothing here is used
by training itself: the seqio tasks in `tasks/demo.py` read what corpus.py wrote.
"""
