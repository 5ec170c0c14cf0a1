"""Conversational refinement of a search: "cheaper", "under $40", "in blue", "bigger", "without Acme", "more like
the second one", "only in stock", understood by rules over the store's own catalog vocabulary.

A search session keeps its last state (`SearchState`: the words searched, the constraints added since, the sort,
an item to find more like, and the page shown). A follow-up utterance either *refines* that state or, when the
rules do not account for every content word of it, starts a *new search* with it: an utterance is never an error.
Nothing is hosted or downloaded: the vocabulary (brands, colours and other attribute values, numeric sizes with
their units) is the catalog's own, read through the search engine's query parser (`QueryParser.parse`, which
already finds brands, colours, attribute values and price phrases) and its catalog columns.

Refinement kinds (`KINDS`), each with what it changes:

| kind | utterances | constraint |
|---|---|---|
| `price_max` / `price_min` / `price_range` | "under $40", "over 100", "between 20 and 40" | the price bounds |
| `cheaper` / `pricier` | "cheaper", "less expensive" / "pricier" | below 0.8 x / above 1.25 x the median price shown |
| `attribute` | "in blue", "red ones", "64gb" | that value of the catalog attribute that has it |
| `bigger` / `smaller` | "bigger", "larger", "smaller" | the sized attribute's values above / below the median shown |
| `brand` | "from Acme", "only Acme" | brands = [Acme] |
| `exclude_brand` | "without Acme", "not Acme", "not that brand" (the first hit's) | exclude_brands += [Acme] |
| `like` | "more like the second one", "similar to #3" | items like that hit (its neighbours) |
| `in_stock` | "only in stock", "available now" | available = true |
| `sort` | "cheapest first", "most expensive first", "most popular" | the sort |
| `undo` | "undo", "go back" | the previous state |
"""

from __future__ import annotations

import copy
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from aisle.query import Filters, fold
from aisle.search.explain import filter_phrases
from aisle.search.query import QueryParser
from aisle.search.text import STOPWORDS, normalize

KINDS = ("price_max", "price_min", "price_range", "cheaper", "pricier", "attribute", "bigger", "smaller", "brand",
         "exclude_brand", "like", "in_stock", "sort", "undo")

#: Words that carry no constraint in a follow-up ("show me the blue ones please").
FILLER = frozenset(STOPWORDS) | frozenset((
    "from", "by", "made", "brand",
    "show", "me", "only", "ones", "one", "please", "something", "some", "just", "want", "like", "them", "those",
    "these", "it", "that", "make", "give", "options", "items", "products", "stuff", "instead", "now", "too",
    "also", "any", "can", "you", "i", "d", "rather", "prefer", "see", "find", "get", "color", "colour", "version",
    "versions", "kind", "kinds", "maybe", "how", "about", "what",
))

_ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4, "fifth": 5,
             "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8, "ninth": 9, "9th": 9,
             "tenth": 10, "10th": 10, "last": -1}
_ORD = "|".join(sorted(_ORDINALS, key=len, reverse=True))
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("undo", re.compile(r"^(?:undo|go back|back|undo that|previous)$")),
    ("like", re.compile(rf"\b(?:(?:more|something|items?|ones?) )?(?:like|similar to) (?:the )?(?:(?P<ord>{_ORD})"
                        rf"|(?:number |no |# ?)?(?P<num>\d+))(?: (?:one|item|result|product))?\b")),
    ("exclude_that", re.compile(r"\b(?:not that brand|(?:a |an )?(?:different|other|another) brands?)\b")),
    ("in_stock", re.compile(r"\b(?:(?:only )?(?:in stock|available(?: now)?)(?: only)?)\b")),
    ("sort_asc", re.compile(r"\b(?:cheapest|lowest price) first\b|\bsort(?:ed)? by price\b")),
    ("sort_desc", re.compile(r"\b(?:most expensive|highest price) first\b")),
    ("sort_pop", re.compile(r"\b(?:most popular|best ?sellers?|best selling)(?: first)?\b")),
    ("cheaper", re.compile(r"\b(?:cheaper|less expensive|lower price[sd]?|more affordable|budget|inexpensive)\b")),
    ("pricier", re.compile(r"\b(?:pricier|more expensive|fancier|higher end|premium|nicer)\b")),
    ("bigger", re.compile(r"\b(?:bigger|larger|more capacity|higher capacity|greater|longer|heavier)\b")),
    ("smaller", re.compile(r"\b(?:smaller|more compact|less capacity|lower capacity|shorter|lighter|tinier)\b")),
]
_NEGATION = re.compile(r"\b(?:without|not|no|except|excluding|other than|but not|anything but)\s+(?P<rest>.+)$")
_LEAD = re.compile(r"^(?:(?:please |can you |could you )?(?:show me|find me|find|get me|i want|i need|i'm looking for|"
                   r"im looking for|looking for|search for)\s+)|\s+please$", re.IGNORECASE)
_APPAREL = ("xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl")
_UNITS = {"oz": 1 / 16, "lb": 1.0, "lbs": 1.0, "g": 1 / 453.6, "kg": 2.2046, "ml": 0.001, "l": 1.0, "mb": 0.001,
          "gb": 1.0, "tb": 1000.0}
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*-?\s*([a-z]+)?")


def size_of(value: str) -> float | None:
    """A comparable size of an attribute value: its number in a common unit ("12 oz" < "2 lb", "512GB" < "1TB"),
    an apparel size's rank, or None when it is no size."""
    v = fold(value)
    if v in _APPAREL:
        return float(_APPAREL.index(v))
    m = _NUMBER.search(v)
    if m is None:
        return None
    return float(m.group(1)) * _UNITS.get(m.group(2) or "", 1.0)


@dataclass
class SearchState:
    """One step of a search session: what is searched and under which constraints, and what was shown."""

    query: str
    filters: dict[str, Any] = field(default_factory=dict)  # Filters.to_json() of the refinements' constraints
    sort: str = "relevance"
    like: str | None = None  # item id: show items like it
    like_title: str | None = None
    sized: dict[str, str] = field(default_factory=dict)  # attribute key -> "capacity over 64GB" (bigger/smaller)
    understood: str = ""
    shown: list[dict[str, Any]] = field(default_factory=list)  # the page shown: item_id, title, brand, price

    def constraints(self) -> dict[str, Any]:
        return {"query": self.query, "filters": self.filters, "sort": self.sort, "like": self.like}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Refinement:
    """What an utterance was understood as: a new state, how (`kind`: refine, new_search, undo) and which changes."""

    kind: str
    state: SearchState
    changes: list[dict[str, Any]]


class Refiner:
    """Reads follow-up utterances against one catalog (through its search engine's parser and columns)."""

    def __init__(self, parser: QueryParser, sizes: Mapping[str, Mapping[str, float]],
                 size_of_items: Any) -> None:
        """`sizes`: attribute key -> value -> comparable size (the catalog's sized attributes); `size_of_items`:
        (item ids, key) -> the values of that attribute the items have."""
        self.parser, self.sizes, self.size_of_items = parser, sizes, size_of_items

    def refine(self, previous: SearchState | None, utterance: str) -> Refinement:
        """The state after `utterance` (a new search when there is no previous state or the rules do not cover
        the utterance's words)."""
        text = normalize(utterance)
        if previous is None or not text:
            return self._new(utterance)
        changes: list[dict[str, Any]] = []
        f = Filters.from_json(copy.deepcopy(dict(previous.filters)))  # the previous state stays as it was
        state = replace(previous, filters={}, shown=previous.shown)
        rest = text
        for kind, pattern in _RULES:
            m = pattern.search(rest)
            if m is None:
                continue
            if kind == "undo":
                return Refinement("undo", previous, [{"kind": "undo"}])
            rest = (rest[:m.start()] + " " + rest[m.end():]).strip()
            change = self._apply(kind, m, previous, f, state)
            if change is None:
                return self._new(utterance)
            changes.append(change)
            if "phrase" in change:
                state.sized = {**state.sized, change["key"]: change["phrase"]}
        neg = _NEGATION.search(rest)
        if neg is not None:
            brands = self.parser.parse(neg.group("rest")).filters.brands
            if brands:
                f.exclude_brands = list(dict.fromkeys([*f.exclude_brands, *brands]))
                f.brands = [b for b in f.brands if fold(b) not in {fold(x) for x in brands}]
                changes.append({"kind": "exclude_brand", "brands": brands})
                rest = rest[:neg.start()].strip()
        parsed = self.parser.parse(rest) if rest else None
        if parsed is not None:
            pf = parsed.filters
            if pf.price_min is not None or pf.price_max is not None:
                kind = "price_range" if pf.price_min is not None and pf.price_max is not None else (
                    "price_max" if pf.price_max is not None else "price_min")
                f.price_min, f.price_max = pf.price_min, pf.price_max
                changes.append({"kind": kind, "price_min": pf.price_min, "price_max": pf.price_max})
            if pf.brands:
                f.brands = list(pf.brands)
                f.exclude_brands = [b for b in f.exclude_brands if fold(b) not in {fold(x) for x in pf.brands}]
                changes.append({"kind": "brand", "brands": list(pf.brands)})
            for key, values in pf.attributes.items():
                f.attributes[key] = list(values)
                state.sized = {k: v for k, v in state.sized.items() if k != key}
                changes.append({"kind": "attribute", "key": key, "values": list(values)})
            if pf.categories:  # another category is another search, not a refinement of this one
                return self._new(utterance)
            leftover = [w for w in parsed.residual.split() if w not in FILLER and not w.isdigit()]
            if leftover:
                return self._new(utterance)
        if not changes:
            return self._new(utterance)
        state.query = self._without(state.query, changes)
        state.filters = f.to_json()
        state.understood = understood(state)
        return Refinement("refine", state, changes)

    def _without(self, query: str, changes: list[dict[str, Any]]) -> str:
        """The searched words without those a change replaces ("blue hiking boots" + "in red": "hiking boots"; a
        new price drops the old price phrase, a brand the brand named in the words)."""
        parsed = self.parser.parse(query)
        drop: set[str] = set()
        for c in changes:
            if c["kind"] == "attribute":
                drop |= {w for v in parsed.filters.attributes.get(c["key"], []) for w in fold(v).split()}
            elif c["kind"] in ("brand", "exclude_brand"):
                drop |= {w for b in parsed.filters.brands for w in fold(b).split()}
        text = query
        if parsed.price_text and any(c["kind"] in ("price_max", "price_min", "price_range", "cheaper", "pricier")
                                     for c in changes):
            text = normalize(query).replace(parsed.price_text, " ")
        kept = [w for w in text.split() if fold(w) not in drop]
        return " ".join(kept) if kept else query

    def _new(self, utterance: str) -> Refinement:
        state = SearchState(query=_LEAD.sub("", " ".join(utterance.split())).strip() or " ".join(utterance.split()))
        state.understood = understood(state)
        return Refinement("new_search", state, [])

    def _apply(self, kind: str, m: re.Match[str], previous: SearchState, f: Filters, state: SearchState
               ) -> dict[str, Any] | None:
        """Apply one rule's change to `f` / `state`; None when it cannot apply (nothing shown to refer to)."""
        shown = previous.shown
        prices = [h["price"] for h in shown if h.get("price") is not None]
        if kind == "like":
            n = _ORDINALS[m.group("ord")] if m.group("ord") else int(m.group("num"))
            if not shown or n == 0 or n > len(shown):
                return None
            hit = shown[n - 1] if n > 0 else shown[-1]
            state.like, state.like_title = hit["item_id"], hit.get("title")
            return {"kind": "like", "item_id": hit["item_id"], "position": n if n > 0 else len(shown)}
        if kind == "exclude_that":
            brand = next((h.get("brand") for h in shown if h.get("brand")), None)
            if brand is None:
                return None
            f.exclude_brands = list(dict.fromkeys([*f.exclude_brands, brand]))
            f.brands = [b for b in f.brands if fold(b) != fold(brand)]
            return {"kind": "exclude_brand", "brands": [brand]}
        if kind == "in_stock":
            f.available = True
            return {"kind": "in_stock"}
        if kind.startswith("sort_"):
            state.sort = {"sort_asc": "price_asc", "sort_desc": "price_desc", "sort_pop": "popularity"}[kind]
            return {"kind": "sort", "sort": state.sort}
        if kind in ("cheaper", "pricier"):
            if not prices:
                return None
            mid = statistics.median(prices)
            if kind == "cheaper":
                f.price_max = round(0.8 * mid, 2) if f.price_max is None else round(min(f.price_max, 0.8 * mid), 2)
                f.price_min = None if f.price_min is not None and f.price_min >= f.price_max else f.price_min
                return {"kind": "cheaper", "price_max": f.price_max, "reference": mid}
            f.price_min = round(1.25 * mid, 2)
            f.price_max = None if f.price_max is not None and f.price_max <= f.price_min else f.price_max
            return {"kind": "pricier", "price_min": f.price_min, "reference": mid}
        if kind in ("bigger", "smaller"):
            return self._resize(kind, shown, f)
        raise ValueError(f"unknown refinement rule {kind!r}")  # a rule without a branch: a bug, not input

    def _resize(self, kind: str, shown: Sequence[Mapping[str, Any]], f: Filters) -> dict[str, Any] | None:
        """"bigger" / "smaller": the sized attribute most of the shown items have; values past their median."""
        ids = [h["item_id"] for h in shown]
        best: tuple[int, str, list[float]] | None = None
        for key, sizes in self.sizes.items():
            have = [sizes[v] for v in self.size_of_items(ids, key) if v in sizes]
            if have and (best is None or len(have) > best[0]):
                best = (len(have), key, have)
        if best is None:
            return None
        _, key, have = best
        ref = statistics.median(have)
        wanted = [v for v, s in self.sizes[key].items() if (s > ref if kind == "bigger" else s < ref)]
        if f.attributes.get(key):  # narrow what was already asked for
            wanted = [v for v in wanted if v in f.attributes[key]] or wanted
        if not wanted:
            return None
        f.attributes[key] = sorted(wanted, key=lambda v: self.sizes[key][v])
        near = min(self.sizes[key], key=lambda v: abs(self.sizes[key][v] - ref))
        return {"kind": kind, "key": key, "values": f.attributes[key], "reference": ref,
                "phrase": f"{key.replace('_', ' ')} {'over' if kind == 'bigger' else 'under'} {near}"}


def understood(state: SearchState) -> str:
    """The state as a sentence: "showing blue coffee makers under $40, not Acme"."""
    f = dict(state.filters)
    colours = list(f.get("attributes", {}).get("color", []))
    rest = {**f, "attributes": {k: v for k, v in f.get("attributes", {}).items()
                                if k != "color" and k not in state.sized}}
    phrases = filter_phrases(rest) + list(state.sized.values())
    what = " ".join([*colours, state.query or "everything"])
    if state.like:
        what = f"items like {state.like_title or state.like}" + (f" ({' '.join(colours)})" if colours else "")
    sort = {"price_asc": "cheapest first", "price_desc": "most expensive first", "popularity": "most popular first"}
    if state.sort in sort:
        phrases.append(sort[state.sort])
    return f"showing {what}" + (f" {', '.join(phrases)}" if phrases else "")


__all__ = ["FILLER", "KINDS", "Refinement", "Refiner", "SearchState", "size_of", "understood"]
