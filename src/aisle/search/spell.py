"""Spelling correction against the catalog's own vocabulary (symmetric-delete lookup, SymSpell style).

Why the catalog and not an English dictionary: shoppers misspell product words ("ligt bulb", "miricale gro",
"toliet") and brand names, and the words worth correcting to are the ones some product actually contains; a
dictionary word that no product has cannot improve a result. Rules:

* a word that is in the vocabulary (or is a stopword, a number, or shorter than 4 letters: "blk", "led", "ac"
  are abbreviations more often than typos) is never changed;
* candidates are vocabulary words within Damerau-Levenshtein distance 1 (words of 4-5 letters) or 2 (longer),
  found through precomputed single deletes of every vocabulary word, matched against up to two deletes of the
  query word, then verified with the exact distance;
* the nearest wins, ties go to the word more products contain; a word with no candidate at distance 1 may be
  split into two vocabulary words ("deckover" -> "deck over") when both halves are frequent; distance-2 guesses
  must keep the first letter;
* the caller keeps the original word next to the correction, so a rare true word is never lost.

The index holds ~10 entries per vocabulary word; a 50k-product catalog's vocabulary (~30k words) builds in about
a second and a lookup costs tens of microseconds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz.distance import OSA

from aisle.overlay import Layered


def _deletes1(word: str) -> set[str]:
    return {word[:i] + word[i + 1:] for i in range(len(word))}


def _layered(m: Mapping[str, Any]) -> Layered[str, Any]:
    """The map as an overlay version (its dict shared: an index never changes the dicts it was built with)."""
    return m if isinstance(m, Layered) else Layered.sharing(dict(m) if not isinstance(m, dict) else m)


def damerau(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (Damerau-Levenshtein where a transposed pair is not edited again) between
    `a` and `b`, or limit + 1 when it is larger than `limit`. rapidfuzz's C++ implementation with a cut-off: the
    same figures as the Python loop it replaced, and a lookup verifies dozens of candidates per query word."""
    return int(OSA.distance(a, b, score_cutoff=limit))


class SpellIndex:
    """Word frequencies of a catalog plus the delete index used to find corrections."""

    def __init__(self, frequencies: Mapping[str, int], *, postings: Mapping[str, np.ndarray] | None = None,
                 min_count: int = 1) -> None:
        self.freq: Mapping[str, int] = {w: int(c) for w, c in frequencies.items() if c >= min_count}
        self.postings: Mapping[str, np.ndarray] = postings or {}
        self._deletes: dict[str, list[str]] = {}
        self._more: Mapping[str, tuple[str, ...]] = {}  # the deletes of words added by upserts since (`with_docs`)
        for w in self.freq:
            if not w.isalpha():
                continue
            for d in (*_deletes1(w), w):
                self._deletes.setdefault(d, []).append(w)

    def with_docs(self, docs: list[list[str]], rows: list[int]) -> SpellIndex:
        """A copy that also knows the words of upserted documents `docs` (catalog rows `rows`): frequencies and
        postings grow, and new words get their deletes in a small overlay instead of a rebuild of the delete
        index. Words of a changed item's old text stay (a correction towards them still finds related items)."""
        out = copy.copy(self)
        freq: dict[str, int] = {}  # what changes, as overlays on this index's maps (aisle.overlay)
        postings: dict[str, np.ndarray] = {}
        more: dict[str, tuple[str, ...]] = {}
        for doc, row in zip(docs, rows, strict=True):
            for w in set(doc):
                p = postings.get(w)
                if p is None:
                    p = self.postings.get(w)
                if p is not None and row in p:
                    continue
                postings[w] = np.append(p, np.int32(row)) if p is not None else np.array([row], np.int32)
                known = freq.get(w) or self.freq.get(w, 0)
                if not known and w.isalpha():
                    for d in (*_deletes1(w), w):
                        more[d] = (*(more.get(d) or self._more.get(d, ())), w)
                freq[w] = known + 1
        out.freq = _layered(self.freq).with_items(freq)
        out.postings = _layered(self.postings).with_items(postings)
        out._more = _layered(self._more).with_items(more)
        return out

    @classmethod
    def from_words(cls, docs: Iterable[Iterable[str]]) -> SpellIndex:
        """Document frequencies and postings of the words of `docs` (each doc an iterable of surface words)."""
        post: dict[str, list[int]] = {}
        for i, doc in enumerate(docs):
            for w in set(doc):
                post.setdefault(w, []).append(i)
        return cls({w: len(p) for w, p in post.items()},
                   postings={w: np.asarray(p, dtype=np.int32) for w, p in post.items()})

    def cooccurrence(self, word: str, context: Iterable[str]) -> int:
        """How many (document, context word) pairs have `word` together with a context word."""
        p = self.postings.get(word)
        if p is None:
            return 0
        return sum(len(np.intersect1d(p, q, assume_unique=True)) for c in context
                   if (q := self.postings.get(c)) is not None)

    def __contains__(self, word: str) -> bool:
        return word in self.freq

    @staticmethod
    def max_distance(word: str) -> int:
        return 0 if len(word) < 4 else 1 if len(word) <= 5 else 2

    def candidates(self, word: str) -> list[tuple[str, int, int]]:
        """(vocabulary word, distance, frequency) within the allowed distance, best first."""
        limit = self.max_distance(word)
        if limit == 0:
            return []
        probes = {word} | _deletes1(word)
        if limit >= 2:
            probes |= {d2 for d1 in _deletes1(word) for d2 in _deletes1(d1)}
        seen: set[str] = set()
        found: list[tuple[str, int, int]] = []
        for p in probes:
            for w in (*self._deletes.get(p, ()), *self._more.get(p, ())):
                if w in seen:
                    continue
                seen.add(w)
                d = damerau(word, w, limit)
                if d <= limit:
                    found.append((w, d, self.freq[w]))
        found.sort(key=lambda t: (t[1], -t[2], t[0]))
        return found

    def split(self, word: str, *, min_freq: int = 3) -> tuple[str, str] | None:
        """Best split of an unknown word into two frequent vocabulary words ('deckover' -> ('deck', 'over'))."""
        best: tuple[int, tuple[str, str]] | None = None
        for i in range(2, len(word) - 1):
            a, b = word[:i], word[i:]
            fa, fb = self.freq.get(a, 0), self.freq.get(b, 0)
            if fa >= min_freq and fb >= min_freq and (best is None or min(fa, fb) > best[0]):
                best = (min(fa, fb), (a, b))
        return None if best is None else best[1]

    def correct(self, word: str, *, context: Iterable[str] = (), protected: frozenset[str] = frozenset()) -> str | None:
        """The correction of `word` ('ligt' -> 'light'), a split ('deckover' -> 'deck over'), or None.

        With `context` (the query's other known words), a candidate that shares products with them beats one that
        does not, whatever the distance ("wood steaks" -> "wood stakes", not "wood speaks"); among those that do,
        the nearer, then the more shared, wins.
        """
        if word in self.freq or word in protected or not word.isalpha() or len(word) < 4:
            return None
        cands = self.candidates(word)
        parts = self.split(word)
        ctx = [c for c in context if c in self.postings and c != word]
        if cands and ctx:
            scored = [(self.cooccurrence(w, ctx), d, f, w) for w, d, f in cands[:30]
                      if d == 1 or (w[0] == word[0] and not parts)]
            together = [t for t in scored if t[0] > 0]
            if together:
                return max(together, key=lambda t: (-t[1], t[0], t[2]))[3]
        if cands and cands[0][1] == 1:
            return cands[0][0]
        if parts:
            return " ".join(parts)
        # Distance-2 guesses need more support: the same first letter (typos seldom hit it) and a word that
        # several products contain, or the only candidate.
        far = [c for c in cands if c[0][0] == word[0]]
        if far and (far[0][2] >= 3 or len(far) == 1):
            return far[0][0]
        return None

    def save(self, folder: Path) -> None:
        """`words.json` (word -> frequency) and the postings as one flat array with offsets (npy)."""
        folder.mkdir(parents=True, exist_ok=True)
        vocab = list(self.freq)
        (folder / "words.json").write_text(json.dumps(dict(self.freq)))
        lens = np.array([len(self.postings.get(w, ())) for w in vocab], dtype=np.int64)
        flat = [self.postings[w] for w in vocab if w in self.postings]
        np.save(folder / "postings.npy", np.concatenate(flat) if flat else np.zeros(0, np.int32))
        np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(lens)]))

    @classmethod
    def load(cls, folder: Path) -> SpellIndex:
        freq: dict[str, int] = json.loads((folder / "words.json").read_text())
        flat, offsets = np.load(folder / "postings.npy"), np.load(folder / "offsets.npy")
        post = {w: flat[offsets[i]:offsets[i + 1]] for i, w in enumerate(freq) if offsets[i + 1] > offsets[i]}
        return cls(freq, postings=post)
