"""Candidate generation: lexical and dense top-k lists fused with reciprocal-rank fusion (RRF).

Why RRF: BM25 scores and cosines live on unrelated scales that shift from query to query, while ranks do not;
RRF (score = sum of w / (k + rank)) needs no calibration and is robust to one list being poor for a query (a typo
that the spelling step missed still finds neighbours densely; a model number the encoder cannot represent still
matches lexically). k = 60 is the constant of Cormack et al.; the dense list is weighted 0.5 because alone it is
clearly weaker on product titles (Home Depot NDCG@10 0.31 dense vs 0.41 lexical). The fused list is what the
reranker reorders, and the ranking when no reranker is trained.

Lexical query terms: the corrected words with weight 1, any original word that the correction replaced also with
weight 1 (a rare true word is never lost: it scores only where it occurs), and synonym/compound expansions with
weight 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aisle.search.dense import DenseIndex
from aisle.search.lexical import LexicalIndex, bigrams, chargrams, stem_sequence
from aisle.search.query import ParsedQuery
from aisle.search.text import analyze

RRF_K = 60.0
DENSE_WEIGHT = 0.5
EXPANSION_WEIGHT = 0.5


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
            head=alpha[-1] if alpha else None,
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

    def __len__(self) -> int:
        return len(self.rows)

    def order(self, by: np.ndarray) -> np.ndarray:
        return np.argsort(-by, kind="stable")


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k highest positive scores (within `mask`), best first."""
    pos = scores > 0
    if mask is not None:
        pos &= mask
    idx = np.flatnonzero(pos)
    if len(idx) > k:
        idx = idx[np.argpartition(-scores[idx], k)[:k]]
    return idx[np.argsort(-scores[idx], kind="stable")]


class Retriever:
    def __init__(self, lexical: LexicalIndex, dense: DenseIndex | None) -> None:
        self.lexical = lexical
        self.dense = dense

    def candidates(self, terms: QueryTerms, qvec: np.ndarray | None, *, mask: np.ndarray | None = None,
                   k_lex: int = 200, k_dense: int = 200, dense_rows: np.ndarray | None = None) -> Candidates:
        """Fused candidates; `dense_rows` passes a dense top-k computed beforehand (batched evaluation)."""
        total, per = self.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        lex_rows = top_k(total, k_lex, mask)
        if dense_rows is not None:
            dense_rows = dense_rows[dense_rows >= 0][:k_dense]
        elif self.dense is not None and qvec is not None and k_dense > 0:
            dense_rows, _ = self.dense.search(qvec, k_dense, mask)
        else:
            dense_rows = np.zeros(0, np.int64)
        rows = np.unique(np.concatenate([lex_rows, dense_rows])).astype(np.int64)
        lex_rank = np.zeros(len(rows), np.float32)
        dense_rank = np.zeros(len(rows), np.float32)
        lex_rank[np.searchsorted(rows, lex_rows)] = np.arange(1, len(lex_rows) + 1)
        dense_rank[np.searchsorted(rows, dense_rows)] = np.arange(1, len(dense_rows) + 1)
        rrf = np.where(lex_rank > 0, 1.0 / (RRF_K + lex_rank), 0.0) + \
            np.where(dense_rank > 0, DENSE_WEIGHT / (RRF_K + dense_rank), 0.0)
        dense_sim = self.dense.similarity(qvec, rows) if self.dense is not None and qvec is not None \
            else np.zeros(len(rows), np.float32)
        matched = self.lexical.match_count(terms.tokens)
        return Candidates(rows=rows, lex=total[rows], dense=dense_sim, lex_rank=lex_rank, dense_rank=dense_rank,
                          rrf=rrf.astype(np.float32), fields={k: v[rows] for k, v in per.items()}, lex_all=total,
                          matched=matched[rows], matched_all=matched, fields_all=per)
