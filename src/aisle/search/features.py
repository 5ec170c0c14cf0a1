"""Reranking features of (query, candidate) pairs, computed for a whole candidate set at once.

Why these: each one captures something BM25 or a cosine alone gets wrong on product search. Ratios of matched
query words (plain and idf-weighted) separate "all of the query" from "its most frequent word many times"; the
query's head word (its last non-number word: "l *bracket*", "deck *stain*") names the product type, so matching it
matters more than matching a modifier; bound measure tokens ("60w", "1/2in", "2x4") must match exactly when the
shopper gave one; the score under the original spelling next to the corrected one tells the model how much a
correction is trusted; character trigrams catch the typos and split/joined words the spelling step left; the
structured matches (brand, colour, category, price inside an extracted range) and popularity come from the
catalog. Candidate-relative versions (score / best score of the query) make features comparable across queries.
Everything is vectorised over the candidate set: ~1-2 ms for 300 candidates.
"""

from __future__ import annotations

import numpy as np

from aisle.search.catalog import Catalog
from aisle.search.lexical import LexicalIndex
from aisle.search.query import ParsedQuery
from aisle.search.retrieve import Candidates, QueryTerms
from aisle.search.text import analyze

FEATURES: tuple[str, ...] = (
    "rrf", "lex", "lex_rel", "lex_rank", "dense", "dense_gap", "dense_rank",
    "bm25_title", "bm25_title_orig", "bm25_bigram", "bm25_chargram", "chargram_rel",
    "bm25_brand", "bm25_category", "bm25_attributes", "bm25_description",
    "title_match", "title_match_ratio", "title_idf_cov", "title_cover", "orig_match_ratio", "all_match",
    "bigram_match_ratio", "measure_q", "measure_match_ratio", "number_q", "number_match_ratio",
    "head_match", "q_len", "q_corrections", "title_len",
    "brand_match", "color_match", "category_match", "price_fit", "popularity",
)


def _rank_feature(rank: np.ndarray) -> np.ndarray:
    """1/log2(1 + rank), 0 when absent from the list."""
    return np.where(rank > 0, 1.0 / np.log2(1.0 + np.maximum(rank, 1.0)), 0.0)


def _rel(x: np.ndarray) -> np.ndarray:
    m = float(x.max()) if len(x) else 0.0
    return x / m if m > 0 else np.zeros_like(x)


def _ratio(matched: np.ndarray, total: int) -> np.ndarray:
    return matched / total if total else np.full(len(matched), -1.0, dtype=np.float32)


def compute(pq: ParsedQuery, terms: QueryTerms, cand: Candidates, catalog: Catalog,
            lexical: LexicalIndex) -> np.ndarray:
    """Feature matrix (len(cand), len(FEATURES)) in `FEATURES` order, float32."""
    rows = cand.rows
    m = len(rows)
    title = lexical.fields["title"]
    zeros = np.zeros(m, dtype=np.float32)
    f: dict[str, np.ndarray] = {}
    f["rrf"] = cand.rrf
    f["lex"] = cand.lex
    f["lex_rel"] = _rel(cand.lex)
    f["lex_rank"] = _rank_feature(cand.lex_rank)
    f["dense"] = cand.dense
    f["dense_gap"] = cand.dense - (cand.dense.max() if m else 0.0)
    f["dense_rank"] = _rank_feature(cand.dense_rank)
    f["bm25_title"] = cand.fields.get("title", zeros)
    f["bm25_title_orig"] = title.scores_at(terms.orig_tokens, rows) if terms.orig_tokens != terms.tokens \
        else f["bm25_title"]
    f["bm25_bigram"] = cand.fields.get("title_bigram", zeros)
    cg = lexical.fields.get("title_chargram")
    f["bm25_chargram"] = cg.scores_at(terms.chargrams, rows) if cg is not None else zeros
    f["chargram_rel"] = _rel(f["bm25_chargram"])
    for name in ("brand", "category", "attributes", "description"):
        f[f"bm25_{name}"] = cand.fields.get(name, zeros)

    uniq = list(dict.fromkeys(terms.tokens))
    match = title.matches_at(uniq, rows)
    f["title_match"] = match
    f["title_match_ratio"] = _ratio(match, len(uniq))
    idf_total = title.token_idf(uniq)
    f["title_idf_cov"] = title.matches_at(uniq, rows, idf=True) / idf_total if idf_total > 0 else zeros
    f["title_cover"] = match / np.maximum(title.doc_len[rows], 1)
    orig = list(dict.fromkeys(terms.orig_tokens))
    f["orig_match_ratio"] = _ratio(title.matches_at(orig, rows), len(orig)) if orig != uniq else f["title_match_ratio"]
    f["all_match"] = (match >= len(uniq)).astype(np.float32) if uniq else zeros
    bg = lexical.fields.get("title_bigram")
    bgs = list(dict.fromkeys(terms.bigrams))
    f["bigram_match_ratio"] = _ratio(bg.matches_at(bgs, rows), len(bgs)) if bg is not None else zeros
    f["measure_q"] = np.full(m, len(terms.measures), dtype=np.float32)
    f["measure_match_ratio"] = _ratio(title.matches_at(terms.measures, rows), len(set(terms.measures)))
    f["number_q"] = np.full(m, len(terms.numbers), dtype=np.float32)
    f["number_match_ratio"] = _ratio(title.matches_at(terms.numbers, rows), len(set(terms.numbers)))
    f["head_match"] = title.matches_at([terms.head], rows) if terms.head else np.full(m, -1.0, dtype=np.float32)
    f["q_len"] = np.full(m, len(uniq), dtype=np.float32)
    f["q_corrections"] = np.full(m, len(pq.corrections), dtype=np.float32)
    f["title_len"] = title.doc_len[rows].astype(np.float32)

    flt = pq.filters
    if flt.brands:
        want = catalog.brand.has_any(flt.brands, rows)
        has = (catalog.brand.indptr[rows + 1] > catalog.brand.indptr[rows])
        f["brand_match"] = np.where(want, 1.0, np.where(has, -1.0, 0.0))
    else:
        f["brand_match"] = zeros
    colors = flt.attributes.get("color", [])
    if colors:
        hit = np.zeros(m, dtype=bool)
        for c in colors:
            toks = analyze(c)
            if toks:
                hit |= title.matches_at(toks, rows) >= len(set(toks))
        if "color" in catalog.attributes:
            hit |= catalog.attributes["color"].has_any(colors, rows)
        f["color_match"] = np.where(hit, 1.0, -1.0)
    else:
        f["color_match"] = zeros
    f["category_match"] = np.where(catalog.category.has_any(flt.categories, rows), 1.0, -1.0) \
        if flt.categories else zeros
    if flt.price_min is not None or flt.price_max is not None:
        p = catalog.price[rows]
        lo = -np.inf if flt.price_min is None else flt.price_min
        hi = np.inf if flt.price_max is None else flt.price_max
        f["price_fit"] = np.where(np.isnan(p), 0.0, np.where((p >= lo) & (p <= hi), 1.0, -1.0))
    else:
        f["price_fit"] = zeros
    f["popularity"] = np.log1p(catalog.popularity[rows]) if len(catalog.popularity) else zeros
    return np.column_stack([np.asarray(f[n], dtype=np.float32) for n in FEATURES]) if m else \
        np.zeros((0, len(FEATURES)), dtype=np.float32)
