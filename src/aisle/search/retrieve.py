"""Candidate generation: lexical and dense top-k lists fused with reciprocal-rank fusion (RRF).

Why RRF: BM25 scores and cosines live on unrelated scales that shift from query to query, while ranks do not;
RRF (score = sum of w / (k + rank)) needs no calibration and is robust to one list being poor for a query (a typo
that the spelling step missed still finds neighbours densely; a model number the encoder cannot represent still
matches lexically). The constant k and the dense list's weight are `Fusion` settings: k = 60 (Cormack et al.) and
dense weight 0.5 are the defaults, because dense alone is clearly weaker on product titles with the packaged
encoder; `aisle search-eval` tunes both on the development queries only (`aisle.search.tune`), since a
domain-adapted encoder deserves more weight. The fused list is what the reranker reorders, and the ranking when no
reranker is trained. With a search memory (`aisle.search.memory`: what shoppers engaged with after similar logged
searches), its first `k_memory` products are a third list, fused with `memory_weight`.

Lexical query terms: the corrected words with weight 1, any original word that the correction replaced also with
weight 1 (a rare true word is never lost: it scores only where it occurs), and synonym/compound expansions with
weight 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aisle.search.dense import DenseIndex
from aisle.search.lexical import LexicalIndex, bigrams, chargrams, query_pairs, stem_sequence
from aisle.search.memory import Recollection
from aisle.search.query import ParsedQuery
from aisle.search.text import analyze

RRF_K = 60.0
DENSE_WEIGHT = 0.5
MEMORY_WEIGHT = 1.0  # a product similar searches led to is as good a lead as the best lexical list's
EXPANSION_WEIGHT = 0.5


@dataclass(frozen=True)
class Fusion:
    """How the lexical and dense lists are fused: score = 1 / (rrf_k + lexical rank) + dense_weight / (rrf_k +
    dense rank), a list's term 0 where the item is not in it."""

    rrf_k: float = RRF_K
    dense_weight: float = DENSE_WEIGHT
    memory_weight: float = MEMORY_WEIGHT


def fuse(lex_rank: np.ndarray, dense_rank: np.ndarray, fusion: Fusion,
         memory_rank: np.ndarray | None = None) -> np.ndarray:
    """The RRF score of candidates from their 1-based ranks in each list (0: absent); the one definition that
    serving and the fusion tuning share."""
    score = (np.where(lex_rank > 0, 1.0 / (fusion.rrf_k + lex_rank), 0.0)
             + np.where(dense_rank > 0, fusion.dense_weight / (fusion.rrf_k + dense_rank), 0.0))
    if memory_rank is not None:
        score = score + np.where(memory_rank > 0, fusion.memory_weight / (fusion.rrf_k + memory_rank), 0.0)
    return score.astype(np.float32)


@dataclass
class QueryTerms:
    """A parsed query turned into index tokens."""

    tokens: list[str]  # analysed corrected text: stems + bound measures
    orig_tokens: list[str]  # analysed text before spelling correction
    lex_tokens: list[str]  # what lexical retrieval scores: tokens + replaced originals + expansions
    lex_weights: list[float]
    bigrams: list[str]
    chargrams: list[str]
    measures: list[str]  # bound measure/dimension tokens ("60w", "2x4")
    numbers: list[str]
    head: str | None  # stem of the last word that is not a number: usually the product type
    pairs: list[str] = field(default_factory=list)  # every pair of distinct query stems (term proximity)

    @classmethod
    def from_parsed(cls, pq: ParsedQuery) -> QueryTerms:
        tokens = analyze(pq.corrected, normalized=True)
        orig = analyze(pq.stripped or pq.normalized, normalized=True)
        weights = dict.fromkeys(tokens, 1.0)
        for t in orig:
            weights.setdefault(t, 1.0)
        for t in analyze(" ".join(pq.expansions)):
            weights.setdefault(t, EXPANSION_WEIGHT)
        seq = stem_sequence(pq.corrected)
        alpha = [t for t in seq if t[:1].isalpha()]
        return cls(
            tokens=tokens, orig_tokens=orig, lex_tokens=list(weights), lex_weights=list(weights.values()),
            bigrams=bigrams(seq), chargrams=chargrams(pq.corrected),
            measures=[t for t in tokens if t[:1].isdigit() and any(c.isalpha() for c in t)],
            numbers=[t for t in tokens if t[:1].isdigit() and not any(c.isalpha() for c in t)],
            head=alpha[-1] if alpha else None, pairs=query_pairs(seq),
        )


@dataclass
class Candidates:
    """The fused candidate set of one query; every array is aligned with `rows` (catalog row numbers)."""

    rows: np.ndarray
    lex: np.ndarray
    dense: np.ndarray
    lex_rank: np.ndarray  # 1-based rank in the lexical list, 0 when not in it
    dense_rank: np.ndarray
    rrf: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # per-field BM25 at `rows`
    lex_all: np.ndarray | None = None  # the combined lexical score of every catalog item
    matched: np.ndarray | None = None  # distinct query words each candidate contains (any own field)
    matched_all: np.ndarray | None = None  # the same for every catalog item
    fields_all: dict[str, np.ndarray] = field(default_factory=dict)  # per-field BM25 of every catalog item
    memory_rank: np.ndarray | None = None  # 1-based rank in the search memory's list, 0 when not in it
    recollection: Recollection | None = None  # what the search memory holds for the query (None: no memory)

    def __len__(self) -> int:
        return len(self.rows)

    def order(self, by: np.ndarray) -> np.ndarray:
        return np.argsort(-by, kind="stable")


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k highest positive scores (within `mask`), best first, ties by row: so the top k is always the
    first k of a deeper top list (what the fusion tuning rebuilds lists from)."""
    pos = scores > 0
    if mask is not None:
        pos &= mask
    idx = np.flatnonzero(pos)
    if k <= 0:
        return idx[:0]
    if len(idx) > k:
        kth = scores[idx[np.argpartition(-scores[idx], k - 1)[k - 1]]]
        idx = idx[scores[idx] >= kth]  # every item tied with the k-th, so the cut below is by row
    return idx[np.lexsort((idx, -scores[idx]))][:k]


class Retriever:
    def __init__(self, lexical: LexicalIndex, dense: DenseIndex | None) -> None:
        self.lexical = lexical
        self.dense = dense

    def candidates(self, terms: QueryTerms, qvec: np.ndarray | None, *, mask: np.ndarray | None = None,
                   k_lex: int = 200, k_dense: int = 200, dense_rows: np.ndarray | None = None,
                   fusion: Fusion = Fusion(), recollection: Recollection | None = None,
                   k_memory: int = 0) -> Candidates:
        """Fused candidates; `dense_rows` passes a dense top-k computed beforehand (batched evaluation); with a
        `recollection` (the search memory's answer for the query), its first `k_memory` products are fused too."""
        total, per = self.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        lex_rows = top_k(total, k_lex, mask)
        if dense_rows is not None:
            dense_rows = dense_rows[dense_rows >= 0][:k_dense]
        elif self.dense is not None and qvec is not None and k_dense > 0:
            dense_rows, _ = self.dense.search(qvec, k_dense, mask)
        else:
            dense_rows = np.zeros(0, np.int64)
        mem_rows = np.zeros(0, np.int64)
        if recollection is not None and k_memory > 0:
            mem_rows = recollection.top(k_memory)
            if mask is not None:
                mem_rows = mem_rows[mask[mem_rows]]
        rows = np.unique(np.concatenate([lex_rows, dense_rows, mem_rows])).astype(np.int64)
        lex_rank = np.zeros(len(rows), np.float32)
        dense_rank = np.zeros(len(rows), np.float32)
        lex_rank[np.searchsorted(rows, lex_rows)] = np.arange(1, len(lex_rows) + 1)
        dense_rank[np.searchsorted(rows, dense_rows)] = np.arange(1, len(dense_rows) + 1)
        memory_rank = None
        if recollection is not None:
            memory_rank = np.zeros(len(rows), np.float32)
            memory_rank[np.searchsorted(rows, mem_rows)] = np.arange(1, len(mem_rows) + 1)
        rrf = fuse(lex_rank, dense_rank, fusion, memory_rank)
        dense_sim = self.dense.similarity(qvec, rows) if self.dense is not None and qvec is not None \
            else np.zeros(len(rows), np.float32)
        matched = self.lexical.match_count(terms.tokens)
        return Candidates(rows=rows, lex=total[rows], dense=dense_sim, lex_rank=lex_rank, dense_rank=dense_rank,
                          rrf=rrf, fields={k: v[rows] for k, v in per.items()}, lex_all=total,
                          matched=matched[rows], matched_all=matched, fields_all=per, memory_rank=memory_rank,
                          recollection=recollection)
