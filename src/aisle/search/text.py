"""Text analysis shared by the index and the query: normalisation, units, tokens, stems.

Why one analyzer for both sides: a lexical match only happens when a title and a query reduce to the same token,
so "60-Watt", "60 watt" and "60w" must all become the token `60w`, and `1/2 in.`, `1/2"` and `1/2 inch` the token
`1/2in`. Product text is full of such measures (Home Depot titles: "36 in. x 80 in.", "1-1/2 in.", "5 gal."), and
shoppers type them every way. The analyzer

* folds case and unicode (accents, vulgar fractions "½", curly quotes),
* rewrites unit spellings to one short unit after a number ("in.", "inch", `"` -> `in`; "ft.", "feet", `'` -> `ft`;
  "watt" -> `w`; "gallon" -> `gal`, ...), the form `normalize` returns ("60 w", "1/2 in"),
* emits, besides the plain tokens, a bound token per measure (`60w`, `1/2in`) and per dimension pair (`2x4`,
  `36x80`), so "2x4" in a query meets "2 in. x 4 in." in a title,
* stems words with the Snowball English stemmer and drops English stopwords; numbers are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from aisle.query import fold

STOPWORDS: frozenset[str] = frozenset(STOPWORDS_EN) | {"x", "s"}

# Unit spellings -> canonical unit. Matched only right after a number (see _UNIT_RE), longest spelling first.
UNITS: dict[str, tuple[str, ...]] = {
    "sq ft": ("square feet", "square foot", "sq. ft.", "sq ft.", "sq. ft", "sq ft", "sqft", "sf"),
    "cu ft": ("cubic feet", "cubic foot", "cu. ft.", "cu ft.", "cu. ft", "cu ft", "cuft"),
    "fl oz": ("fluid ounces", "fluid ounce", "fl. oz.", "fl oz.", "fl. oz", "fl oz", "floz"),
    "in": ("inches", "inch", "in.", "in", '"', "''", "”", "″"),
    "ft": ("feet", "foot", "ft.", "ft", "'", "’", "′"),
    "yd": ("yards", "yard", "yd.", "yd"),
    "mm": ("millimeters", "millimeter", "mm."),
    "cm": ("centimeters", "centimeter", "cm."),
    "lb": ("pounds", "pound", "lbs.", "lbs", "lb."),
    "oz": ("ounces", "ounce", "oz."),
    "gal": ("gallons", "gallon", "gal."),
    "qt": ("quarts", "quart", "qt."),
    "w": ("watts", "watt", "w."),
    "v": ("volts", "volt", "v."),
    "amp": ("amperes", "ampere", "amps", "amp."),
    "hp": ("horsepower", "h.p.", "hp."),
    "btu": ("btus", "btu."),
    "gpm": ("gpm.",),
    "psi": ("psi.",),
    "ga": ("gauge", "ga."),
    "deg": ("degrees", "degree", "°", "deg."),
    "mil": ("mils",),
    "pc": ("pieces", "piece", "pcs.", "pcs", "pc."),
    "pk": ("packs", "pack", "pk."),
    "ct": ("count", "ct."),
}
_CANONICAL = {"mm", "cm", "oz", "gpm", "psi", "btu", "hp", "amp", "w", "v", "ga", "pc", "pk", "ct", "mil", "lb", "qt",
              "gal", "yd", "deg"}
_SPELLINGS: dict[str, str] = {}
for _unit, _forms in UNITS.items():
    for _form in (*_forms, *((_unit,) if _unit in _CANONICAL else ())):
        _SPELLINGS[_form] = _unit
_alts = "|".join(re.escape(s) for s in sorted(_SPELLINGS, key=len, reverse=True))
_NUM = r"\d+(?:-\d+/\d+|/\d+|\.\d+)?"
# A number, optional space or hyphen, a unit spelling; the unit must end at a non-letter.
_UNIT_RE = re.compile(rf"(?<![\w.])({_NUM})\s*-?\s*({_alts})(?![a-z0-9])")
_MIXED_FRACTION = re.compile(r"(?<![\d/])(\d+)[\s-]+(\d+/\d+)(?![\d/])")
_DIM_RE = re.compile(rf"(?<![\w./])({_NUM})(?: ?[a-z]{{1,3}})? ?x ?({_NUM})(?![\d/])")
_TOKEN_RE = re.compile(r"\d+(?:-\d+/\d+|/\d+|\.\d+)?[a-z]*|[a-z][a-z0-9]*")
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_MEASURE_RE = re.compile(rf"(?<![\w./])({_NUM}) ({_UNIT_NAMES})(?![a-z0-9])")
_stemmer = Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def normalize(text: str) -> str:
    """Folded text with canonical units: 'LED 60-Watt A19 1/2 in. Pipe' -> 'led 60 w a19 1/2 in pipe'."""
    t = fold(text)
    t = re.sub(r"(?<=\d),(?=\d{3})", "", t)  # 1,000 -> 1000
    t = _MIXED_FRACTION.sub(r"\1-\2", t)  # 1 1/2 -> 1-1/2
    t = re.sub(r"(?<=\d)\s*x\s*(?=\d)", " x ", t)  # 2x4x8 -> 2 x 4 x 8
    t = _UNIT_RE.sub(lambda m: f"{m.group(1)} {_SPELLINGS[m.group(2)]}", t)
    t = re.sub(r"[^\w\s/.\-\"'$%]", " ", t)
    return " ".join(t.split())


def _dimension_tokens(norm: str) -> list[str]:
    """`2x4` for '2 in x 4 in' (and for '2 x 4'); overlapping, so '2 x 4 x 8' also gives `4x8`."""
    out, pos = [], 0
    while m := _DIM_RE.search(norm, pos):
        out.append(f"{m.group(1)}x{m.group(2)}")
        pos = m.start(2)
    return out


def _bind_measures(norm: str) -> str:
    """'60 w' -> '60 60w', '10 cu ft' -> '10 10cuft': the number stays a token, the unit only travels bound."""
    return _MEASURE_RE.sub(lambda m: f"{m.group(1)} {m.group(1)}{m.group(2).replace(' ', '')}", norm)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return word if word[0].isdigit() else _stemmer.stemWord(word)


def words(norm: str) -> list[str]:
    """Surface word tokens of normalised text (no stemming, stopwords kept): the spelling vocabulary's unit."""
    return _TOKEN_RE.findall(norm.replace("'s ", " "))


def analyze(text: str, *, normalized: bool = False) -> list[str]:
    """Index/query tokens: stems without stopwords, plus bound measure tokens."""
    norm = text if normalized else normalize(text)
    toks = [stem(w) for w in words(_bind_measures(norm)) if w not in STOPWORDS]
    return toks + _dimension_tokens(norm)


def analyze_many(texts: Iterable[str]) -> list[list[str]]:
    return [analyze(t) for t in texts]
