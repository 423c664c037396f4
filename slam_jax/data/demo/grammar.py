"""A small English sentence grammar for the offline demo corpus.

Word lists are written here; inflections (plurals, past tense, -ing, -ly adverbs), number words,
compound nouns and place names are generated from them, which gives a vocabulary of a few
thousand word forms. Sentences come from a handful of templates; the same generator serves the
text-only, speech-only and paired sets so they share one distribution. Everything is
deterministic given a `random.Random`.

Output is lower-case words separated by single spaces, no punctuation (LibriSpeech style before
upper-casing), so every sentence is speakable by eSpeak and its transcript is exact.
"""

import random
from typing import Dict, List, Sequence

_NOUNS = """
apple anchor answer arrow artist autumn baker ball band basket beach bean bear bell berry bird
blanket boat bone book bottle bowl box branch bread bridge brother brush bucket builder button
cabin cake camel camera candle canoe captain car card carpet castle cat chain chair cheese chef
cherry child church circle city cliff clock cloud coat coin collar cookie corner cottage cousin
cow crow crown cup curtain dancer daughter desk diamond doctor dog doll donkey door dragon drawer
dream drum duck eagle egg engine eye face factory farmer feather fence field finger fire fish
flag flower forest fox friend frog garden gate giant gift girl glass glove goat gold grape
guitar hammer hand harbor hat hawk heart hill horse house island jacket jar jewel journey judge
kettle key king kitchen kite knight ladder lake lamp lantern leaf lemon letter library light
lion lizard machine map market meadow melon mirror monkey moon mountain mouse needle nest net
night ocean onion orange owl painter palace pencil pepper piano picture pillow pilot pirate plate
pocket poet pond potato prince princess puppet queen rabbit radio rain ribbon ring river road
robot rock roof rope rose sailor sandwich scarf school sea shadow sheep shell ship shoe shop
singer sister sky snake soldier song spider spoon square stable star station stone storm stream
street student sugar sun table tailor teacher tent thunder tiger tower town toy train tree truck
tunnel turtle umbrella valley village violin wagon wall watch water whale wheel window wing
winter wizard wolf worker writer yard
"""

_IRREGULAR_PLURALS = {
    "child": "children", "mouse": "mice", "sheep": "sheep", "fish": "fish", "leaf": "leaves",
    "knife": "knives", "wolf": "wolves", "shelf": "shelves",
}

_ADJECTIVES = """
able angry ancient bitter black blue bold brave bright broad brown busy calm careful cheap
clean clever cold cool crisp curious dark deep dusty eager early easy empty fair famous fast
fierce fine flat fond fresh friendly full gentle giant glad golden good grand gray great green
happy hard heavy high hollow honest hot huge humble hungry icy kind large late lazy light little
lively lonely long loud low lucky mild modern narrow neat new nice noble odd old orange pale
patient plain polite poor proud pure purple quick quiet rapid rare red rich rough round royal
rusty sad safe salty sharp shiny short shy silent silver simple slow small smart smooth soft
solid sour spare steady steep strange strong sturdy sudden sunny sweet swift tall tender thick
thin tidy tiny tired tough true ugly vast warm weak wet white wide wild wise wooden yellow young
"""

# Adjectives that take a regular -ly adverb.
_LY_ADVERB_BASES = """
angry bitter bold brave bright calm careful cheap clever cold curious eager fair fierce firm
fond fresh gentle glad grand great happy hard heavy honest humble hungry kind late lazy light
lively loud lucky mild neat nice noble odd patient plain polite poor proud quick quiet rapid
rare rich rough sad safe sharp shy silent simple slow smart smooth soft steady strange strong
sudden sweet swift tender tidy tired true warm weak wild wise
"""

_OTHER_ADVERBS = """
again almost already always away back down early everywhere far fast here inside later never
nearby often once outside perhaps quite rather seldom slowly soon still then there today
together tomorrow tonight twice up yesterday
"""

# Transitive verbs: base form; irregular past tenses below, the rest are regular.
_VERBS = """
admire answer ask bake borrow bring build buy call carry catch chase clean climb collect cook
count cover cross cut draw drink drive drop enjoy explore fetch fill find fix fold follow
forget gather give grab guard guide help hide hold hug join keep kick kiss lift like lose love
make mend miss move need open order paint pass pick place plant pull push reach read remember
repair return ride ring roll save see sell send share shut sing sketch steal study take teach
tell throw touch trade visit wash watch wear weigh win wrap write
"""

_IRREGULAR_PAST = {
    "bring": "brought", "build": "built", "buy": "bought", "catch": "caught", "cut": "cut",
    "draw": "drew", "drink": "drank", "drive": "drove", "find": "found", "forget": "forgot",
    "give": "gave", "hide": "hid", "hold": "held", "keep": "kept", "lose": "lost", "make": "made",
    "read": "read", "ride": "rode", "ring": "rang", "see": "saw", "sell": "sold", "send": "sent",
    "shut": "shut", "sing": "sang", "steal": "stole", "take": "took", "teach": "taught",
    "tell": "told", "throw": "threw", "wear": "wore", "win": "won", "write": "wrote",
}

_INTRANSITIVE_VERBS = """
arrive dance dream fall float fly grow jump laugh listen live rest run shine shout sleep smile
speak stand stay swim talk travel wait walk wander whisper work
"""

_IRREGULAR_INTRANSITIVE_PAST = {
    "fall": "fell", "fly": "flew", "grow": "grew", "run": "ran", "shine": "shone",
    "sleep": "slept", "speak": "spoke", "stand": "stood", "swim": "swam",
}

_NAMES = """
adam alice amber andrew anna arthur ben bella carl carol charles chloe daniel david diana edgar
edith edward ella emily emma eric ethan felix fiona frank george grace hannah harry helen henry
isaac ivy jack jacob james jane jasper jenny john julia kate laura leo lily lucas lucy luke
maria mark martha martin mary max mia nancy nathan nina noah oliver olivia oscar paul peter
philip rachel rose ruby ryan sam sarah simon sophie susan thomas tom victor walter william zoe
"""

_PLACE_PREFIXES = """
ash bay beech black bramble bright brook clay cold crow deer east elm fair fern fox glen gold
green hazel high holly iron kings lake long maple marsh mill moss north oak pine red river
rose salt silver stone sun thorn west white willow wolf
"""

_PLACE_SUFFIXES = "bridge brook burg bury dale field ford gate ham haven hill hurst land mere mont moor port stead ton vale ville wick wood worth".split()

_COMPOUND_HEADS = "house boat yard field stone light wood fish bird hill".split()

_PREPOSITIONS = "near behind beside under over across along inside around past beyond".split()

_NUMBERS = ("two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_SEASON_TIMES = ("in the morning", "in the evening", "at night", "at noon", "in the spring",
                 "in the summer", "in the autumn", "in the winter", "last week", "every day")


def _words(block: str) -> List[str]:
  return block.split()


def plural(noun: str) -> str:
  if noun in _IRREGULAR_PLURALS:
    return _IRREGULAR_PLURALS[noun]
  if noun.endswith(("s", "x", "z", "ch", "sh")):
    return noun + "es"
  if noun.endswith("y") and noun[-2] not in "aeiou":
    return noun[:-1] + "ies"
  return noun + "s"


def past(verb: str) -> str:
  if verb in _IRREGULAR_PAST:
    return _IRREGULAR_PAST[verb]
  if verb in _IRREGULAR_INTRANSITIVE_PAST:
    return _IRREGULAR_INTRANSITIVE_PAST[verb]
  if verb.endswith("e"):
    return verb + "d"
  if verb.endswith("y") and verb[-2] not in "aeiou":
    return verb[:-1] + "ied"
  if verb in ("drop", "grab", "hug", "plan", "shop", "stop", "travel"):
    return verb + verb[-1] + "ed"
  return verb + "ed"


def third_person(verb: str) -> str:
  if verb.endswith(("s", "x", "z", "ch", "sh", "o")):
    return verb + "es"
  if verb.endswith("y") and verb[-2] not in "aeiou":
    return verb[:-1] + "ies"
  return verb + "s"


def gerund(verb: str) -> str:
  if verb.endswith("ie"):
    return verb[:-2] + "ying"
  if verb.endswith("e") and not verb.endswith(("ee", "ye")):
    return verb[:-1] + "ing"
  if verb in ("drop", "grab", "hug", "plan", "shop", "stop", "swim", "run", "cut", "shut",
              "win", "travel"):
    return verb + verb[-1] + "ing"
  return verb + "ing"


def adverb(adjective: str) -> str:
  if adjective == "true":
    return "truly"
  if adjective.endswith("y") and len(adjective) > 2:
    return adjective[:-1] + "ily"
  if adjective.endswith("le") and adjective not in ("whole",):
    return adjective[:-1] + "y"
  if adjective.endswith("ll"):
    return adjective + "y"
  return adjective + "ly"


def number_phrase(rng: random.Random) -> str:
  if rng.random() < 0.6:
    return rng.choice(_NUMBERS)
  tens = rng.choice(_TENS)
  return tens if rng.random() < 0.3 else f"{tens} {rng.choice(_NUMBERS[:8])}"


class Grammar:
  """Sentence generator: `Grammar().sentence(rng)` -> one lower-case sentence."""

  def __init__(self):
    nouns = _words(_NOUNS)
    self.nouns = nouns
    self.plurals = {n: plural(n) for n in nouns}
    self.adjectives = _words(_ADJECTIVES)
    self.adverbs = [adverb(a) for a in _words(_LY_ADVERB_BASES)] + _words(_OTHER_ADVERBS)
    self.verbs = _words(_VERBS)
    self.intransitive = _words(_INTRANSITIVE_VERBS)
    self.names = _words(_NAMES)
    self.places = sorted({p + s for p in _words(_PLACE_PREFIXES) for s in _PLACE_SUFFIXES})
    short = [n for n in nouns if len(n) <= 5]
    self.compounds = sorted({m + h for m in short for h in _COMPOUND_HEADS if m != h})
    self._templates = (
        self._t_simple_past, self._t_relative, self._t_place, self._t_said, self._t_question,
        self._t_present, self._t_count, self._t_progressive, self._t_day, self._t_compound)

  # --- phrases ---------------------------------------------------------------------------
  def _noun(self, rng: random.Random, allow_compound: bool = True) -> str:
    if allow_compound and rng.random() < 0.2:
      return rng.choice(self.compounds)
    return rng.choice(self.nouns)

  def _np(self, rng: random.Random) -> str:
    """Singular noun phrase: determiner, optional adjectives, noun."""
    det = rng.choice(("the", "the", "a", "this", "that", "my", "your", "our", "their", "his",
                      "her"))
    adjs = rng.sample(self.adjectives, k=rng.choice((0, 1, 1, 2)))
    noun = self._noun(rng)
    if det == "a" and (adjs[0] if adjs else noun)[0] in "aeiou":
      det = "an"
    return " ".join([det, *adjs, noun])

  def _np_plural(self, rng: random.Random) -> str:
    det = rng.choice(("the", "some", "many", "few", "these", "those", "all the"))
    adjs = rng.sample(self.adjectives, k=rng.choice((0, 1, 1)))
    noun = self.plurals[rng.choice(self.nouns)]
    return " ".join([det, *adjs, noun])

  def _subject(self, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
      return rng.choice(self.names)
    if r < 0.45:
      return rng.choice(("i", "we", "they", "you", "he", "she"))
    return self._np(rng)

  def _object(self, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
      return rng.choice(self.names)
    if r < 0.4:
      return self._np_plural(rng)
    return self._np(rng)

  def _pp(self, rng: random.Random) -> str:
    if rng.random() < 0.35:
      return f"{rng.choice(_PREPOSITIONS)} {rng.choice(self.places)}"
    return f"{rng.choice(_PREPOSITIONS)} {self._np(rng)}"

  def _maybe(self, rng: random.Random, p: float, phrase: str) -> List[str]:
    return [phrase] if rng.random() < p else []

  # --- templates ---------------------------------------------------------------------------
  def _t_simple_past(self, rng):
    return [self._subject(rng), past(rng.choice(self.verbs)), self._object(rng),
            *self._maybe(rng, 0.5, self._pp(rng)),
            *self._maybe(rng, 0.3, rng.choice(self.adverbs))]

  def _t_relative(self, rng):
    return [self._np(rng), "that", past(rng.choice(self.verbs)), self._object(rng),
            past(rng.choice(self.intransitive)), *self._maybe(rng, 0.5, self._pp(rng))]

  def _t_place(self, rng):
    return [rng.choice(("in", "near", "beyond")), rng.choice(self.places),
            self._np_plural(rng), past(rng.choice(self.intransitive)),
            *self._maybe(rng, 0.6, rng.choice(self.adverbs))]

  def _t_said(self, rng):
    return [rng.choice(self.names), rng.choice(("said", "thought", "knew", "heard", "believed")),
            "that", self._subject(rng), past(rng.choice(self.verbs)), self._object(rng)]

  def _t_question(self, rng):
    return [rng.choice(("did", "will", "could", "should", "would")), self._subject(rng),
            rng.choice(self.verbs), self._object(rng), *self._maybe(rng, 0.4, self._pp(rng))]

  def _t_present(self, rng):
    return [self._np(rng), third_person(rng.choice(self.verbs)), self._object(rng),
            rng.choice(_SEASON_TIMES)]

  def _t_count(self, rng):
    return [number_phrase(rng), self.plurals[rng.choice(self.nouns)],
            rng.choice(("were", "are", "seemed", "looked")), rng.choice(self.adjectives),
            *self._maybe(rng, 0.5, self._pp(rng))]

  def _t_progressive(self, rng):
    return [self._subject(rng), rng.choice(("was", "is", "will be", "kept")),
            gerund(rng.choice(self.verbs)), self._object(rng),
            *self._maybe(rng, 0.4, rng.choice(self.adverbs))]

  def _t_day(self, rng):
    return ["on", rng.choice(_DAYS), self._subject(rng), past(rng.choice(self.intransitive)),
            self._pp(rng)]

  def _t_compound(self, rng):
    return [self._np(rng), "and", self._np(rng), past(rng.choice(self.intransitive)),
            rng.choice(("together", "again", "at last", "for a while", "all day"))]

  # --- public --------------------------------------------------------------------------------
  def sentence(self, rng: random.Random) -> str:
    words = rng.choice(self._templates)(rng)
    return " ".join(w for w in words if w)

  def sentences(self, rng: random.Random, n: int) -> List[str]:
    return [self.sentence(rng) for _ in range(n)]

  def vocabulary(self) -> List[str]:
    """Every word form the grammar can emit (sorted)."""
    words = set(self.nouns) | set(self.plurals.values()) | set(self.adjectives)
    words |= set(self.adverbs) | set(self.names) | set(self.places) | set(self.compounds)
    for v in self.verbs:
      words |= {v, past(v), third_person(v), gerund(v)}
    for v in self.intransitive:
      words |= {v, past(v)}
    words |= set(_PREPOSITIONS) | set(_NUMBERS) | set(_TENS) | set(_DAYS)
    for phrase in _SEASON_TIMES:
      words |= set(phrase.split())
    words |= set(("the a an this that my your our their his her some many few these those all "
                  "i we they you he she in near beyond said thought knew heard believed did will "
                  "could should would were are seemed looked was is be kept on and together "
                  "again at last for while day").split())
    return sorted(words)


def word_counts(sentences: Sequence[str]) -> Dict[str, int]:
  counts: Dict[str, int] = {}
  for s in sentences:
    for w in s.split():
      counts[w] = counts.get(w, 0) + 1
  return counts
