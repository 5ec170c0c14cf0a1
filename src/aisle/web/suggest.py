"""Query suggestions for the search box: prefix completion over the catalog's own categories, brands and titles.

Why not past queries: a store's search log is full of typos and one-off phrasings (the synthetic one has both on
purpose), and suggesting a misspelling teaches it. Completing to what the catalog actually sells always leads
somewhere. Every query word must be the prefix of some word of a phrase (order-free, so "head sony" finds
"Sony ... headphones"); phrases rank by kind, then (items) by whether a query word names the item's category,
then by the popularity of the items behind them. When nothing completes, the search engine's own spelling
correction is offered instead.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
_KINDS = ("category", "brand", "item")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Phrase:
    text: str
    kind: str  # category | brand | item
    weight: float
    item_id: str | None = None
    items: int = 0  # catalog items behind a category or brand
    kind_words: tuple[str, ...] = ()  # an item's leaf category words: "hea" means headphones before "Hearth"


class _Index:
    """An inverted index word -> phrases, with the words sorted for prefix ranges (bisect, no scan)."""

    def __init__(self, phrases: list[Phrase]) -> None:
        self.phrases = phrases
        postings: dict[str, set[int]] = defaultdict(set)
        for n, p in enumerate(phrases):
            for w in words(p.text):
                postings[w].add(n)
        self.vocab = sorted(postings)
        self.postings = [np.fromiter(sorted(postings[w]), np.int64) for w in self.vocab]

    def _matching(self, prefix: str) -> np.ndarray:
        lo = bisect.bisect_left(self.vocab, prefix)
        hi = bisect.bisect_left(self.vocab, prefix + "\uffff")
        if lo == hi:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate(self.postings[lo:hi]))

    def rows(self, terms: list[str]) -> np.ndarray:
        """Phrases (row numbers) of which every term prefixes some word."""
        rows: np.ndarray | None = None
        for t in sorted(set(terms), key=len, reverse=True):  # the longest word is the most selective
            m = self._matching(t)
            rows = m if rows is None else np.intersect1d(rows, m, assume_unique=True)
            if not len(rows):
                break
        return rows if rows is not None else np.zeros(0, np.int64)


_Key = tuple[str, str]  # (kind, text) of a category or brand phrase


@dataclass(frozen=True)
class _Contribution:
    """What one catalog row gives the suggester: its item phrase, and its weight to its categories and brand."""

    phrase: Phrase | None
    weight: float
    names: tuple[_Key, ...]  # every level of its category path, then its brand; empty when it is not offered


class Suggester:
    """Prefix completion over a catalog's phrases: a base index built once per loaded bundle, and an overlay for
    the items upserted since (`with_rows`), so a `PUT /items` costs the suggester the changed items, not a rebuild
    over the catalog (which a 100,000-item store paid on the first suggestion after every upsert). The overlay
    masks the base phrases it replaces (an item's old title, a category or brand whose weight moved) and indexes
    their new versions on their own; it is folded into a new base once it passes 1/8 of the catalog."""

    def __init__(self, phrases: list[Phrase]) -> None:
        self._base = _Index(phrases)
        self._item_at = {p.item_id: n for n, p in enumerate(phrases) if p.kind == "item"}
        self._name_at = {(p.kind, p.text): n for n, p in enumerate(phrases) if p.kind != "item"}
        # the overlay: base rows no longer current, the current phrase (or None) of every item changed since the
        # base, the weight and item count each category or brand gained since, and the index of the new phrases
        self._masked: frozenset[int] = frozenset()
        self._items: dict[str, Phrase | None] = {}
        self._moved: dict[_Key, tuple[float, int]] = {}
        self._delta: _Index | None = None

    @property
    def phrases(self) -> list[Phrase]:
        """Every current phrase (base ones not replaced, then the overlay's)."""
        base = [p for n, p in enumerate(self._base.phrases) if n not in self._masked]
        return base + (self._delta.phrases if self._delta is not None else [])

    @classmethod
    def from_runtime(cls, rt: Any) -> Suggester:
        """Categories (every level of the paths), brands and item titles of the runtime's catalog."""
        cat_w: dict[str, list[float]] = defaultdict(list)
        brand_w: dict[str, list[float]] = defaultdict(list)
        phrases: list[Phrase] = []
        for c in _contributions(rt, range(len(rt.item_ids))):
            for kind, name in c.names:
                (cat_w if kind == "category" else brand_w)[name].append(c.weight)
            if c.phrase is not None:
                phrases.append(c.phrase)
        phrases += [Phrase(c, "category", float(sum(v)), items=len(v)) for c, v in cat_w.items()]
        phrases += [Phrase(b, "brand", float(sum(v)), items=len(v)) for b, v in brand_w.items()]
        return cls(phrases)

    def with_rows(self, old: Any, new: Any, rows: list[int]) -> Suggester:
        """This suggester (over runtime `old`) after an upsert changed `rows` of it, giving runtime `new`: a new
        Suggester sharing the base index; this one is left as it was (requests may still read it)."""
        if len(self._items) + len(rows) > max(512, len(self._base.phrases) // 8):
            return Suggester.from_runtime(new)  # the overlay grew: fold it into a new base
        rows = list(dict.fromkeys(rows))
        before = dict(zip([r for r in rows if r < len(old.item_ids)],
                          _contributions(old, [r for r in rows if r < len(old.item_ids)]), strict=True))
        items, moved = dict(self._items), dict(self._moved)
        for row, after in zip(rows, _contributions(new, rows), strict=True):
            gone = before.get(row)
            for key in gone.names if gone is not None else ():
                w, n = moved.get(key, (0.0, 0))
                moved[key] = (w - gone.weight, n - 1)
            for key in after.names:
                w, n = moved.get(key, (0.0, 0))
                moved[key] = (w + after.weight, n + 1)
            items[str(new.item_ids[row])] = after.phrase
        out = Suggester.__new__(Suggester)
        out._base, out._item_at, out._name_at = self._base, self._item_at, self._name_at
        out._items, out._moved = items, moved
        masked = {self._item_at[i] for i in items if i in self._item_at}
        extra = [p for p in items.values() if p is not None]
        for (kind, text), (w, n) in moved.items():
            at = self._name_at.get((kind, text))
            base = self._base.phrases[at] if at is not None else None
            if at is not None:
                masked.add(at)
            count = n + (base.items if base is not None else 0)
            if count > 0:
                extra.append(Phrase(text, kind, w + (base.weight if base is not None else 0.0), items=count))
        out._masked = frozenset(masked)
        out._delta = _Index(extra) if extra else None
        return out

    def complete(self, query: str, k: int = 8) -> list[Phrase]:
        """Phrases every word of `query` prefixes: up to 2 categories, 2 brands, then items; `k` in all."""
        terms = words(query)
        if not terms:
            return []
        found = [self._base.phrases[int(r)] for r in self._base.rows(terms) if int(r) not in self._masked]
        if self._delta is not None:
            found += [self._delta.phrases[int(r)] for r in self._delta.rows(terms)]

        def names_kind(p: Phrase) -> bool:
            return any(w.startswith(t) for t in terms for w in p.kind_words)

        found.sort(key=lambda p: (_KINDS.index(p.kind), not names_kind(p), -p.weight, p.text))
        out: list[Phrase] = []
        caps = {"category": 2, "brand": 2, "item": k}
        for p in found:
            if caps[p.kind] > 0 and len(out) < k:
                out.append(p)
                caps[p.kind] -= 1
        return out


def _contributions(rt: Any, rows: Any) -> list[_Contribution]:
    """What each of `rows` of runtime `rt` gives the suggester: only items offered (in stock, unless the rules show
    the unavailable too) count, weighted by their popularity in the pipeline (0 for an item new since the bundle)."""
    pop = np.asarray(rt.pipeline.popularity, np.float64) if rt.pipeline is not None else np.zeros(0)
    available = rt.attrs.available
    every = not rt.settings.rules.only_available
    titles, brands, paths = rt.cards["title"], rt.cards["brand"], rt.cards["categories"]
    out = []
    for row in rows:
        if not (every or bool(available[row])):
            out.append(_Contribution(None, 0.0, ()))
            continue
        w = float(pop[row]) if row < len(pop) else 0.0
        path = paths[row] or []
        names = tuple(("category", c) for c in dict.fromkeys(path)) + ((("brand", brands[row]),) if brands[row]
                                                                        else ())
        phrase = Phrase(titles[row], "item", w, rt.item_ids[row], kind_words=tuple(words(path[-1] if path else "")))\
            if titles[row] else None
        out.append(_Contribution(phrase, w, names))
    return out


def suggest_json(suggester: Suggester, query: str, k: int, search: Any = None) -> dict[str, Any]:
    """The JSON the search box shows; a spelling correction from `search` (a SearchEngine) when none complete."""
    hits = suggester.complete(query, k)
    correction = None
    if not hits and search is not None and words(query):
        pq, _terms = search.understand(query)
        if pq.corrections:
            correction = pq.corrected
            hits = suggester.complete(correction, k - 1)
    out = [{"text": correction, "kind": "correction"}] if correction else []
    out += [{"text": p.text, "kind": p.kind, **({"item_id": p.item_id} if p.item_id else {}),
             **({"items": p.items} if p.items else {})} for p in hits]
    return {"query": query, "suggestions": out[:k]}


__all__ = ["Phrase", "Suggester", "suggest_json", "words"]
