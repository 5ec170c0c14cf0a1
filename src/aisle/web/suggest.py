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


class Suggester:
    """An inverted index word -> phrases, with the words sorted for prefix ranges (bisect, no scan)."""

    def __init__(self, phrases: list[Phrase]) -> None:
        self.phrases = phrases
        postings: dict[str, set[int]] = defaultdict(set)
        for n, p in enumerate(phrases):
            for w in words(p.text):
                postings[w].add(n)
        self.vocab = sorted(postings)
        self.postings = [np.fromiter(sorted(postings[w]), np.int64) for w in self.vocab]

    @classmethod
    def from_runtime(cls, rt: Any) -> Suggester:
        """Categories (every level of the paths), brands and item titles of the runtime's catalog."""
        n = len(rt.item_ids)
        pop = np.asarray(rt.pipeline.popularity, np.float64) if rt.pipeline is not None else np.zeros(n)
        pop = pop[:n] if len(pop) >= n else np.pad(pop, (0, n - len(pop)))
        available = np.asarray(rt.attrs.available, bool)
        if not rt.settings.rules.only_available:
            available = np.ones(n, bool)
        titles, brands, paths = rt.cards["title"], rt.cards["brand"], rt.cards["categories"]
        cat_w: dict[str, list[float]] = defaultdict(list)
        brand_w: dict[str, list[float]] = defaultdict(list)
        phrases: list[Phrase] = []
        for row in range(n):
            if not available[row]:
                continue
            w = float(pop[row])
            for c in dict.fromkeys(paths[row] or ()):
                cat_w[c].append(w)
            if brands[row]:
                brand_w[brands[row]].append(w)
            if titles[row]:
                leaf = (paths[row] or [""])[-1]
                phrases.append(Phrase(titles[row], "item", w, rt.item_ids[row], kind_words=tuple(words(leaf))))
        phrases += [Phrase(c, "category", float(sum(v)), items=len(v)) for c, v in cat_w.items()]
        phrases += [Phrase(b, "brand", float(sum(v)), items=len(v)) for b, v in brand_w.items()]
        return cls(phrases)

    def _matching(self, prefix: str) -> np.ndarray:
        lo = bisect.bisect_left(self.vocab, prefix)
        hi = bisect.bisect_left(self.vocab, prefix + "\uffff")
        if lo == hi:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate(self.postings[lo:hi]))

    def complete(self, query: str, k: int = 8) -> list[Phrase]:
        """Phrases every word of `query` prefixes: up to 2 categories, 2 brands, then items; `k` in all."""
        terms = words(query)
        if not terms:
            return []
        rows: np.ndarray | None = None
        for t in sorted(set(terms), key=len, reverse=True):  # the longest word is the most selective
            m = self._matching(t)
            rows = m if rows is None else np.intersect1d(rows, m, assume_unique=True)
            if not len(rows):
                return []
        assert rows is not None
        found = [self.phrases[int(r)] for r in rows]
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
