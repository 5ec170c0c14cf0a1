"""Lexical retrieval: one BM25 index per catalog field, combined with field weights.

Why bm25s (and not tantivy): search here needs more than a top-k list. The reranker wants, for every candidate,
the BM25 score of each field separately, the count of query words it contains, the score under the original and
under the corrected spelling, and filters/facets are numpy masks over the catalog. bm25s computes BM25 eagerly
into a sparse token -> (doc, score) matrix (CSC arrays), so a query's score for *every* item is a handful of
vectorised scatter-adds and all of the above falls out of the same arrays; it saves as plain .npy/.json (no
pickle) and adds no native dependency beyond numpy/scipy. tantivy is a full search engine (segments, query
parser, its own tokenizers) that returns top-k documents per query: per-field scores of a candidate set would
take one query per field plus a doc-id mapping, and our analyzer (units, measures, dimensions) runs in Python
before it either way. Measured on the Home Depot titles (41,127 products, 8,234 queries; the same analyzer
output fed to both, k1 = 1.2, b = 0.75; a shared 2-core machine):

    bm25s 0.3.16 (this module)                     NDCG@10 0.418   0.09 ms/query (all 41k scores + top 100)
    tantivy 0.27.0 (whitespace tokenizer, OR query) NDCG@10 0.419   0.18 ms/query (top 100 incl. doc fetch)

Same quality, both far inside the latency budget, so the API decides: bm25s. (For reference, plain bm25s with its
own tokenizer scores 0.392: the analyzer, not the engine, is what moves lexical quality.)

Fields and their weights in the combined retrieval score (`FIELD_WEIGHTS`): the title says what the product is;
brand and category confirm it; attributes and description add recall with more noise. Two derived title fields
feed the reranker: `title_bigram` (adjacent stems, "shower_head": word order and compounds), `title_chargram`
(character trigrams of the surface words: typos and split/joined words that the spelling step missed),
`title_head` (the one stem naming what the title sells: "toilet *seat* in white") and `title_window` (pairs of stems
at most `WINDOW` words apart: term proximity as postings, so a candidate set's proximity is a lookup per query word
pair instead of a walk over each title at query time).

Catalog upserts (`LexicalIndex.with_docs`) do not rebuild the index: the changed and new documents go to a small
delta beside the base arrays (token -> rows and scores), and the base postings of a changed document are masked
out. A delta document is scored with the base's collection statistics (document count, average length, document
frequency; 1 for a word the base lacks), so it scores exactly as a base document with the same text would, and an
upsert costs in proportion to the changed documents. The statistics drift from a rebuild's as the catalog changes
(10 items in 100,000 move them by ~1e-4). The delta is saved beside the base arrays (a refresh saves the items it
folded that way) and loaded back as it was; the next full build (a refit) merges it into the base.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import bm25s
import numpy as np

from aisle.overlay import Layered
from aisle.search.text import STOPWORDS, analyze, normalize, stem, words

DERIVED = frozenset({"title_bigram", "title_chargram", "title_head", "title_window"})
FIELD_WEIGHTS: dict[str, float] = {"title": 1.0, "title_bigram": 0.5, "brand": 0.5, "category": 0.5,
                                   "attributes": 0.3, "description": 0.15}
#: BM25 (k1, b) per field where not the default (1.2, 0.75): what the field was built with, which its delta needs
BM25_PARAMS: dict[str, tuple[float, float]] = {"title_chargram": (1.2, 0.5)}
_EMPTY_ROWS = np.zeros(0, np.int64)
_EMPTY_SCORES = np.zeros(0, np.float32)


def bigrams(tokens: Sequence[str]) -> list[str]:
    return [f"{a}_{b}" for a, b in itertools.pairwise(tokens)]


def stem_sequence(text: str) -> list[str]:
    """Stems in order, stopwords removed, no measure tokens: the unit of `title_bigram`."""
    return [stem(w) for w in words(normalize(text)) if w not in STOPWORDS]


#: words that end the part of a title naming the product ("seat *in* white", "fan *with* light")
_HEAD_STOP = frozenset({"with", "for", "by", "w", "includes", "including", "plus"})
#: word distance within which two title words count as near each other (`title_window`)
WINDOW = 3


def title_head(text: str) -> list[str]:
    """The stem naming what a title sells, as a one-token list ([] when none): the last word before the first
    'with' / 'for' / 'in <word>' ("KOHLER elongated toilet seat in white" -> 'seat', "52 in. ceiling fan with
    light" -> 'fan'). Matched against the query's head word, it tells a product from its accessories."""
    ws = words(normalize(text))
    end = len(ws)
    for i, w in enumerate(ws):
        if w in _HEAD_STOP or (w == "in" and i > 0 and ws[i - 1][:1].isalpha() and i + 1 < len(ws)
                                and ws[i + 1][:1].isalpha()):
            end = i
            break
    alpha = [w for w in ws[:end] if w[:1].isalpha() and w not in STOPWORDS]
    return [stem(alpha[-1])] if alpha else []


def pair(a: str, b: str) -> str:
    """One token for two stems, whichever comes first."""
    return f"{a}~{b}" if a <= b else f"{b}~{a}"


def windows(seq: Sequence[str], width: int = WINDOW) -> list[str]:
    """Pairs of distinct stems at most `width` words apart: the unit of `title_window` (term proximity)."""
    return list(dict.fromkeys(pair(a, b) for i, a in enumerate(seq) for b in seq[i + 1:i + 1 + width] if a != b))


def query_pairs(stems: Sequence[str]) -> list[str]:
    """Every pair of distinct query stems, in any order and at any distance (what `title_window` is asked)."""
    uniq = list(dict.fromkeys(stems))
    return [pair(a, b) for i, a in enumerate(uniq) for b in uniq[i + 1:]]


def chargrams(text: str) -> list[str]:
    """Character trigrams of each word with boundary marks: 'deck' -> '#de', 'dec', 'eck', 'ck#'."""
    out: list[str] = []
    for w in words(normalize(text)):
        if len(w) < 3 or w in STOPWORDS or not w[0].isalpha():
            continue
        m = f"#{w}#"
        out.extend(m[i:i + 3] for i in range(len(m) - 2))
    return out


def _idf(n_docs: int, df: int) -> float:
    """BM25's (Lucene) idf, as bm25s computes it."""
    return float(np.log1p((n_docs - df + 0.5) / (df + 0.5)))


class FieldIndex:
    """BM25 scores of one field as CSC arrays: token t has docs indices[indptr[t]:indptr[t+1]] (ascending) with
    scores data[...]; plus the delta of documents upserted since (see the module docstring): `extra` maps a token
    to its delta rows (ascending) and scores, and the base postings of the rows in `replaced` are not read."""

    def __init__(self, vocab: dict[str, int], data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 n_docs: int, doc_len: np.ndarray, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.vocab, self.data, self.indices, self.indptr = vocab, data, indices, indptr
        self.n_docs = n_docs
        self.n_base = n_docs
        self.doc_len = doc_len
        self.k1, self.b = k1, b
        df = np.diff(indptr).astype(np.float32)
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        self.avg_len = float(doc_len.mean()) if len(doc_len) else 1.0
        # overlays (aisle.overlay): an upsert copies the entries it changes, not the whole delta
        self.extra: Layered[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = Layered()  # token -> rows, scores, tf
        self.extra_tokens: Layered[int, tuple[str, ...]] = Layered()  # delta row -> its distinct tokens
        self.replaced = _EMPTY_ROWS  # base rows whose base postings are stale (sorted)
        self._groups: dict[Callable[[str], str | None], dict[str, np.ndarray]] = {}  # base only: copies share it

    @classmethod
    def build(cls, token_lists: list[list[str]], *, k1: float = 1.2, b: float = 0.75) -> FieldIndex:
        n = len(token_lists)
        doc_len = np.array([len(t) for t in token_lists], dtype=np.int32)
        if not any(doc_len):
            return cls({}, np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(1, np.int64), n, doc_len,
                       k1=k1, b=b)
        r = bm25s.BM25(k1=k1, b=b)
        r.index(token_lists, show_progress=False)
        s = r.scores
        return cls(dict(r.vocab_dict), np.asarray(s["data"], np.float32), np.asarray(s["indices"], np.int32),
                   np.asarray(s["indptr"], np.int64), n, doc_len, k1=k1, b=b)

    # ---- the delta -----------------------------------------------------------------------------------

    def with_docs(self, rows: Sequence[int], token_lists: Sequence[Sequence[str]], n_docs: int) -> FieldIndex:
        """A copy where documents `rows` (base rows being replaced, or new rows up to `n_docs`) have these tokens.

        The base arrays are shared; only the delta of the touched tokens and the per-row arrays are copied, so
        the cost follows the changed documents, and this index stays valid for requests still reading it."""
        out = copy.copy(self)
        out.n_docs = n_docs
        out.doc_len = np.zeros(n_docs, np.int32)
        out.doc_len[: len(self.doc_len)] = self.doc_len
        extra = self.extra
        row_tokens: dict[int, tuple[str, ...]] = {}  # the rows' tokens now (an overlay on `extra_tokens`)
        touched: dict[str, int] = {}  # token -> its position in this call's arrays
        for row in rows:  # an earlier delta version of the row leaves the delta first
            for t in self.extra_tokens.get(int(row), ()):
                touched.setdefault(t, len(touched))
        new_tok: list[int] = []
        new_rows: list[int] = []
        new_tfc: list[float] = []
        for row, tokens in zip(rows, token_lists, strict=True):
            counts = Counter(t for t in tokens if t)
            out.doc_len[row] = len(tokens)
            row_tokens[int(row)] = tuple(counts)
            norm = self.k1 * ((1 - self.b) + self.b * len(tokens) / self.avg_len)
            for t, tf in counts.items():
                new_tok.append(touched.setdefault(t, len(touched)))
                new_rows.append(int(row))
                new_tfc.append(tf / (norm + tf))
        # every touched token's postings at once: the old ones without the rows being replaced, plus the new ones,
        # sorted by (token, row) in one go; numpy work per call, not per token
        tokens = list(touched)
        old = [extra.get(t) for t in tokens]
        lengths = np.fromiter((0 if e is None else len(e[0]) for e in old), np.int64, len(old))
        present = [e for e in old if e is not None]
        all_tok = np.concatenate([np.repeat(np.arange(len(tokens)), lengths), np.asarray(new_tok, np.int64)])
        all_rows = np.concatenate([*(e[0] for e in present), np.asarray(new_rows, np.int64)])
        all_tfc = np.concatenate([*(e[2] for e in present), np.asarray(new_tfc, np.float32)])
        n_old = int(lengths.sum())
        keep = np.ones(len(all_rows), bool)
        keep[:n_old] = ~np.isin(all_rows[:n_old], np.asarray(rows, np.int64))
        all_tok, all_rows, all_tfc = all_tok[keep], all_rows[keep], all_tfc[keep]
        order = np.lexsort((all_rows, all_tok))
        all_tok, all_rows, all_tfc = all_tok[order], all_rows[order], all_tfc[order]
        bounds = np.searchsorted(all_tok, np.arange(len(tokens) + 1))
        # a word the base lacks takes its document frequency from the delta, so all its documents agree
        ids = np.fromiter((self.vocab.get(t, -1) for t in tokens), np.int64, len(tokens))
        df = np.diff(bounds)
        idf = np.where(ids >= 0, self.idf[np.maximum(ids, 0)] if len(self.idf) else 0.0,
                       np.log1p((self.n_base - df + 0.5) / (df + 0.5)))
        all_scores = (idf[all_tok] * all_tfc).astype(np.float32)
        postings: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        emptied: list[str] = []
        for j, t in enumerate(tokens):
            a, z = bounds[j], bounds[j + 1]
            if a == z:
                emptied.append(t)
            else:
                postings[t] = (all_rows[a:z], all_scores[a:z], all_tfc[a:z])
        out.extra = extra.with_items(postings, remove=emptied)
        out.extra_tokens = self.extra_tokens.with_items(row_tokens)
        base_rows = np.asarray([r for r in rows if r < self.n_base], np.int64)
        out.replaced = np.union1d(self.replaced, base_rows) if len(base_rows) else self.replaced
        return out

    @property
    def has_delta(self) -> bool:
        return bool(self.extra_tokens) or len(self.replaced) > 0

    def df(self, token: str) -> int:
        """How many documents contain `token` (base postings plus delta; replaced base rows still count)."""
        i = self.vocab.get(token)
        base = int(self.indptr[i + 1] - self.indptr[i]) if i is not None else 0
        extra = self.extra.get(token)
        return base + (len(extra[0]) if extra is not None else 0)

    # ---- scoring ------------------------------------------------------------------------------------

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Vocabulary ids of the distinct known tokens, in first-seen order (base vocabulary only)."""
        out = []
        for t in dict.fromkeys(tokens):
            i = self.vocab.get(t)
            if i is not None and t:
                out.append(i)
        return out

    def scores(self, tokens: Sequence[str], weights: Sequence[float] | None = None) -> np.ndarray:
        """BM25 of every document for `tokens` (each distinct token once, times its weight)."""
        out = np.zeros(self.n_docs, dtype=np.float32)
        w = dict(zip(tokens, weights, strict=True)) if weights is not None else None
        for t in dict.fromkeys(tokens):
            i = self.vocab.get(t)
            if i is None or not t:
                continue
            a, z = self.indptr[i], self.indptr[i + 1]
            out[self.indices[a:z]] += self.data[a:z] * (1.0 if w is None else w[t])
        if self.has_delta:
            out[self.replaced] = 0.0
            for t in dict.fromkeys(tokens):
                e = self.extra.get(t)
                if e is not None:
                    out[e[0]] += e[1] * (1.0 if w is None else w[t])
        return out

    def matches(self, tokens: Sequence[str], *, idf: bool = False) -> np.ndarray:
        """Per document: how many distinct `tokens` it contains (or the sum of their idf)."""
        out = np.zeros(self.n_docs, dtype=np.float32)
        for i in self.ids(tokens):
            a, z = self.indptr[i], self.indptr[i + 1]
            out[self.indices[a:z]] += self.idf[i] if idf else 1.0
        if self.has_delta:
            out[self.replaced] = 0.0
            for t in dict.fromkeys(tokens):
                e = self.extra.get(t)
                if e is not None:
                    out[e[0]] += self._idf_of(t) if idf else 1.0
        return out

    def scores_at(self, tokens: Sequence[str], rows: np.ndarray) -> np.ndarray:
        """`scores(tokens)[rows]`, looking up only `rows` in each posting list (binary search; the reranker's
        features need ~150 documents, and a common character trigram is in tens of thousands)."""
        out = np.zeros(len(rows), dtype=np.float32)
        for i in self.ids(tokens):
            at, ok = self._find(i, rows)
            out[ok] += self.data[at[ok]]
        if self.has_delta:
            out[self._stale(rows)] = 0.0
            for t in dict.fromkeys(tokens):
                at, ok = self._find_extra(t, rows)
                if at is not None:
                    out[ok] += self.extra[t][1][at[ok]]
        return out

    def matches_at(self, tokens: Sequence[str], rows: np.ndarray, *, idf: bool = False) -> np.ndarray:
        """`matches(tokens, idf=idf)[rows]`, by the same lookup as `scores_at`."""
        out = np.zeros(len(rows), dtype=np.float32)
        for i in self.ids(tokens):
            _, ok = self._find(i, rows)
            out[ok] += self.idf[i] if idf else 1.0
        if self.has_delta:
            out[self._stale(rows)] = 0.0
            for t in dict.fromkeys(tokens):
                _, ok = self._find_extra(t, rows)
                if ok is not None:
                    out[ok] += self._idf_of(t) if idf else 1.0
        return out

    def mark(self, token: str, hit: np.ndarray, *, delta: bool) -> None:
        """Set `hit` at the documents containing `token`: the base postings (`delta=False`; a caller clears the
        replaced rows after marking every field) or the delta's."""
        if delta:
            e = self.extra.get(token)
            if e is not None:
                hit[e[0]] = True
            return
        i = self.vocab.get(token)
        if i is not None:
            hit[self.indices[self.indptr[i]:self.indptr[i + 1]]] = True

    def groups(self, key: Callable[[str], str | None]) -> dict[str, np.ndarray]:
        """Rows (sorted) holding any token of each group, the tokens grouped by `key` (None: no group), e.g. the
        items whose title has some measure in watts. The base part is computed once per key function and shared
        by this index's delta copies; the delta's rows are added per call (upserts are few)."""
        base = self._groups.get(key)
        if base is None:
            parts: dict[str, list[np.ndarray]] = {}
            for t, i in self.vocab.items():
                g = key(t)
                if g is not None:
                    parts.setdefault(g, []).append(self.indices[self.indptr[i]:self.indptr[i + 1]])
            base = self._groups[key] = {g: np.unique(np.concatenate(p)).astype(np.int64) for g, p in parts.items()}
        if not self.has_delta:
            return base
        out = {g: np.setdiff1d(r, self.replaced, assume_unique=True) for g, r in base.items()}
        for t, (rows, _, _) in self.extra.items():
            g = key(t)
            if g is not None:
                out[g] = np.union1d(out.get(g, _EMPTY_ROWS), rows)
        return out

    def _stale(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` are replaced base rows (their base postings no longer hold)."""
        return np.isin(rows, self.replaced) if len(self.replaced) else np.zeros(len(rows), bool)

    def _find(self, token: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of `rows` in the token's (ascending) posting list, and which of them are there."""
        a, z = int(self.indptr[token]), int(self.indptr[token + 1])
        at = a + np.searchsorted(self.indices[a:z], rows)
        ok = at < z
        ok[ok] = self.indices[at[ok]] == rows[ok]
        return at, ok

    def _find_extra(self, token: str, rows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        e = self.extra.get(token)
        if e is None:
            return None, None
        at = np.searchsorted(e[0], rows)
        ok = at < len(e[0])
        ok[ok] = e[0][at[ok]] == rows[ok]
        return at, ok

    def _idf_of(self, token: str) -> float:
        """The base's idf of `token`; a word only the delta has takes the delta's document frequency."""
        i = self.vocab.get(token)
        if i is not None:
            return float(self.idf[i])
        e = self.extra.get(token)
        return _idf(self.n_base, len(e[0]) if e is not None else 0)

    def token_idf(self, tokens: Sequence[str]) -> float:
        """Sum of idf of distinct tokens; unknown tokens count as the rarest."""
        top = float(np.log1p((self.n_base + 0.5) / 0.5))
        # float32 terms, summed as before the delta existed (the reranker's title_idf_cov learned on these values)
        return float(sum(self.idf[self.vocab[t]] if t in self.vocab else np.float32(self._idf_of(t)) if t in self.extra
                         else top for t in dict.fromkeys(tokens)))

    def save(self, folder: Path) -> None:
        """The base arrays, and the delta beside them (`delta.json` + `delta.npz`) when there is one: the worker's
        refresh saves the catalog changes it folded as this delta, so a new item costs its own documents, not a
        rebuild of the whole index; the next full build (a refit's) merges it."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(self.vocab))
        np.save(folder / "data.npy", self.data)
        np.save(folder / "indices.npy", self.indices)
        np.save(folder / "indptr.npy", self.indptr)
        np.save(folder / "doc_len.npy", self.doc_len)
        if not self.has_delta:
            return
        tokens = list(self.extra)
        parts = [self.extra[t] for t in tokens]
        bounds = np.r_[0, np.cumsum([len(p[0]) for p in parts])].astype(np.int64)

        def flat(i: int, dtype: type) -> np.ndarray:
            return np.concatenate([p[i] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)

        (folder / "delta.json").write_text(json.dumps({"tokens": tokens, "n_base": self.n_base,
                                                       "avg_len": self.avg_len}))
        np.savez(folder / "delta.npz", bounds=bounds, rows=flat(0, np.int64), scores=flat(1, np.float32),
                 tfc=flat(2, np.float32), replaced=self.replaced,
                 delta_rows=np.fromiter(self.extra_tokens, np.int64, len(self.extra_tokens)))

    @classmethod
    def load(cls, folder: Path, *, k1: float = 1.2, b: float = 0.75) -> FieldIndex:
        doc_len = np.load(folder / "doc_len.npy")
        meta = json.loads((folder / "delta.json").read_text()) if (folder / "delta.json").exists() else None
        n_base = int(meta["n_base"]) if meta else len(doc_len)
        out = cls(json.loads((folder / "vocab.json").read_text()), np.load(folder / "data.npy"),
                  np.load(folder / "indices.npy"), np.load(folder / "indptr.npy"), n_base, doc_len[:n_base],
                  k1=k1, b=b)
        if meta is None:
            return out
        with np.load(folder / "delta.npz") as d:
            bounds, rows, scores, tfc = d["bounds"], d["rows"], d["scores"], d["tfc"]
            out.replaced, delta_rows = d["replaced"], d["delta_rows"]
        out.n_docs, out.doc_len, out.avg_len = len(doc_len), doc_len, float(meta["avg_len"])
        out.extra = Layered.sharing({t: (rows[a:z], scores[a:z], tfc[a:z]) for t, a, z in
                                     zip(meta["tokens"], bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)})
        per_row: dict[int, list[str]] = {int(r): [] for r in delta_rows.tolist()}
        for t, (r, _, _) in out.extra.items():
            for row in r.tolist():
                per_row[row].append(t)
        out.extra_tokens = Layered.sharing({row: tuple(ts) for row, ts in per_row.items()})
        return out


class LexicalIndex:
    """Per-field BM25 indexes over a catalog's field texts."""

    def __init__(self, fields: dict[str, FieldIndex]) -> None:
        self.fields = fields

    @classmethod
    def build(cls, texts: dict[str, list[str]]) -> LexicalIndex:
        fields: dict[str, FieldIndex] = {}
        for name in ("title", "brand", "category", "attributes", "description"):
            if name in texts and any(texts[name]):
                fields[name] = FieldIndex.build([analyze(t) for t in texts[name]])
        titles = texts.get("title", [])
        fields["title_bigram"] = FieldIndex.build([bigrams(stem_sequence(t)) for t in titles])
        k1, b = BM25_PARAMS["title_chargram"]
        fields["title_chargram"] = FieldIndex.build([chargrams(t) for t in titles], k1=k1, b=b)
        fields["title_head"] = FieldIndex.build([title_head(t) for t in titles])
        fields["title_window"] = FieldIndex.build([windows(stem_sequence(t)) for t in titles])
        return cls(fields)

    @staticmethod
    def tokens(name: str, text: str) -> list[str]:
        """The tokens field `name` indexes for `text` (the analyzer, or the derived title units)."""
        if name == "title_bigram":
            return bigrams(stem_sequence(text))
        if name == "title_chargram":
            return chargrams(text)
        if name == "title_head":
            return title_head(text)
        if name == "title_window":
            return windows(stem_sequence(text))
        return analyze(text)

    def with_docs(self, rows: Sequence[int], texts: dict[str, list[str]], n_docs: int) -> LexicalIndex:
        """A copy in which items `rows` have these field `texts` (one list per field, aligned with `rows`; the
        derived fields come from the titles); rows at or past the current count are new items."""
        fields = {}
        for name, f in self.fields.items():
            source = texts.get("title" if name in DERIVED else name, [""] * len(rows))
            fields[name] = f.with_docs(rows, [self.tokens(name, t) for t in source], n_docs)
        return LexicalIndex(fields)

    def combined(self, tokens: Sequence[str], weights: Sequence[float] | None = None,
                 bigram_tokens: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The field-weighted BM25 of every item, and each field's own scores (for features)."""
        per: dict[str, np.ndarray] = {}
        total = np.zeros(next(iter(self.fields.values())).n_docs, dtype=np.float32)
        for name, w in FIELD_WEIGHTS.items():
            f = self.fields.get(name)
            if f is None:
                continue
            per[name] = f.scores(bigram_tokens) if name == "title_bigram" else f.scores(tokens, weights)
            total += w * per[name]
        return total, per

    def match_count(self, tokens: Sequence[str]) -> np.ndarray:
        """Per item: how many of the distinct `tokens` occur in any of its own fields (not the derived ones)."""
        n = next(iter(self.fields.values())).n_docs
        count = np.zeros(n, dtype=np.int16)
        hit = np.zeros(n, dtype=bool)
        own = [f for name, f in self.fields.items() if name not in DERIVED]
        replaced = own[0].replaced if own and own[0].has_delta else None  # every field replaces the same rows
        for t in dict.fromkeys(tokens):
            hit[:] = False
            for f in own:
                f.mark(t, hit, delta=False)
            if replaced is not None:
                hit[replaced] = False
                for f in own:
                    f.mark(t, hit, delta=True)
            count += hit
        return count

    def save(self, folder: Path) -> None:
        for name, f in self.fields.items():
            f.save(folder / name)
        (folder / "fields.json").write_text(json.dumps(list(self.fields)))

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        names = json.loads((folder / "fields.json").read_text())
        return cls({n: FieldIndex.load(folder / n, k1=BM25_PARAMS.get(n, (1.2, 0.75))[0],
                                       b=BM25_PARAMS.get(n, (1.2, 0.75))[1]) for n in names})
