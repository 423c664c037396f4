"""The demo's text-classification label: who acts, the person or the thing.

Every sentence holds exactly one person's name and one noun phrase around a past-tense verb,
optionally after a time phrase and before a place phrase:

  [on monday] alice admired the old dog [near oakford]     -> "person_acts"
  [on monday] the old dog admired alice [near oakford]     -> "person_receives"

Both classes draw the same words from the same distributions, so no single token (nor any bag
of tokens) gives the label away: a classifier has to read the word order. Sentences come from
`grammar.Grammar`'s own word lists and noun phrases, so pre-training on the demo text sees
the same vocabulary.
"""

import random
from typing import List, Tuple

from slam_jax.data.demo import grammar as grammar_lib

CLASS_NAMES = ("person_acts", "person_receives")
_LEADS = ("", "", "", "yesterday", "on monday", "on friday", "in the morning", "at night",
          "last week", "once")


def examples(seed: int, n: int) -> List[Tuple[str, int]]:
  """`n` (sentence, label) pairs, deterministic in `seed`, classes balanced by coin flips."""
  rng = random.Random(seed)
  g = grammar_lib.Grammar()
  out = []
  for _ in range(n):
    name = rng.choice(g.names)
    thing = g._np(rng)  # pylint: disable=protected-access  # the grammar's own noun phrases
    verb = grammar_lib.past(rng.choice(g.verbs))
    label = rng.randrange(2)
    subject, obj = (name, thing) if label == 0 else (thing, name)
    words = [rng.choice(_LEADS), subject, verb, obj]
    if rng.random() < 0.5:
      words.append(g._pp(rng))  # pylint: disable=protected-access
    out.append((" ".join(w for w in words if w), label))
  return out
