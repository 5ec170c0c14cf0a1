"""Offline search evaluation against graded human judgments (the Home Depot relevance file and its like).

Protocol (what `aisle search-eval` runs):

* The catalog is every product of the file (or of `--catalog`); every query ranks the WHOLE catalog.
* Judgments are (query, item, relevance) with relevance on the 1-3 scale (1 irrelevant, 2 partially, 3 perfect).
  Gain = relevance - 1 (0..2, linear); an unjudged item has gain 0.
* NDCG@10 = DCG@10 / ideal DCG@10 of the query's judged gains, averaged over queries with some positive gain
  (a query whose judged items are all rated 1.0 has no ideal ranking and is left out and counted).
* Recall@100 = share of the query's relevant items (relevance >= 2: on average at least "partially relevant")
  found in the top 100, averaged over queries with at least one; items missing from the catalog count as missed.
* Baseline `bm25`: plain bm25s over titles only with its English stemmer and stopwords, default parameters.
* `hybrid`: Aisle's query understanding + field BM25 + MiniLM fused with RRF, nothing learned.
* `aisle`: the hybrid candidates reranked by LambdaMART; with the dense side, also the search memory (`memory`) of the
  fitted queries' judgments, cross-fitted (`cross_fitted_memories`: no query ever sees its own judgments), and an
  `aisle-no-memory` row of the same without it.
* Nothing learned ever scores a query it saw (issue 25). The default protocol, `holdout`: a fixed 20% of the
  queries, those with `fold_of(query, 5) == 0` (a hash of the normalised text, so "Deck Over" and "deck over" fall
  together; `aisle.search.adapt` holds the same queries out of the encoder), is kept out of every fit: the fusion
  settings, the reranker's hyperparameters and the reranker itself are chosen and fitted on the other 80%, and
  every row of the report is scored on the 20%. The older protocol, `cv`: each query ranked by a reranker trained
  on the other `folds` groups (the fusion and an adapted encoder then saw it: kept for continuity). Or, with a
  separate training file, the model is trained on that file's queries over that file's catalog and scores every
  query of the main file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import bm25s
import numpy as np
import polars as pl
import Stemmer

from aisle.evaluate import metrics as mx
from aisle.search import querytypes
from aisle.search.engine import SearchEngine
from aisle.search.memory import SearchMemory
from aisle.search.rerank import Reranker
from aisle.search.retrieve import Candidates, QueryTerms, top_k
from aisle.search.text import normalize

Progress = Callable[[str, int, int], None]
RELEVANT_AT = 2.0
HOLDOUT_FOLDS = 5  # the held-out share is 1 / HOLDOUT_FOLDS of the queries: fold 0


@dataclass
class JudgedQuery:
    query: str
    rows: np.ndarray  # catalog rows of the judged items (-1: not in the catalog)
    gains: np.ndarray  # relevance - 1
    relevant: int  # judged items with relevance >= RELEVANT_AT (in the catalog or not)


@dataclass
class Prepared:
    """What a query's ranking needs after retrieval: fusion-ordered rows and the reranker's head features."""

    rows: np.ndarray
    features: np.ndarray
    lists: dict[str, np.ndarray] = field(default_factory=dict)  # per retriever: its own top rows (`retriever_lists`)
    types: tuple[str, ...] = ()  # the query's types (`querytypes.classify`)
    memory_sim: float = 0.0  # similarity of the closest logged query in the search memory it was given (0: none)


def judged_queries(judgments: pl.DataFrame, engine: SearchEngine) -> list[JudgedQuery]:
    """Judgments (query, item_id, relevance) grouped per query, sorted by query text."""
    grouped = (judgments.group_by("query").agg(pl.col("item_id"), pl.col("relevance").cast(pl.Float64))
               .sort("query"))
    out = []
    for q, items, rel in grouped.iter_rows():
        r = np.asarray(rel, dtype=np.float64)
        out.append(JudgedQuery(q, engine.item_rows(items), r - 1.0, int((r >= RELEVANT_AT).sum())))
    return out


def _judged_rows(jq: JudgedQuery) -> tuple[np.ndarray, np.ndarray]:
    """The judged items that are in the catalog and their gains, one per row (a repeated judgment: the last)."""
    rows, gains = jq.rows[::-1], jq.gains[::-1]
    rows, first = np.unique(rows, return_index=True)
    keep = rows >= 0
    return rows[keep], gains[first][keep]


def ndcg_at(ranked: np.ndarray, jq: JudgedQuery, k: int = 10) -> float | None:
    """Graded NDCG@k of one ranking (`aisle.evaluate.metrics.ndcg`, the one definition); None when the query
    has no positive gain. The ideal list is built from every judged gain, items missing from the catalog too."""
    if float(np.sort(jq.gains)[::-1][:k].sum()) <= 0:
        return None
    rows, gains = _judged_rows(jq)
    top = np.asarray(ranked, dtype=np.int64)[None, :k]
    gain = mx.gain_matrix(top, rows[None, :], gains[None, :])
    return float(mx.ndcg(gain, jq.gains[None, :], k)[0])


def recall_at(ranked: np.ndarray, jq: JudgedQuery, k: int = 100) -> float | None:
    """Recall@k of the relevant judged items (`aisle.evaluate.metrics.recall`); those missing from the catalog
    count as missed. None when the query has no relevant item."""
    if jq.relevant == 0:
        return None
    rows, gains = _judged_rows(jq)
    relevant = rows[gains >= RELEVANT_AT - 1.0]
    found = mx.hits(np.asarray(ranked, dtype=np.int64)[None, :k], relevant[None, :])
    return float(mx.recall(found, np.array([jq.relevant]), k)[0])


def metrics(rankings: list[np.ndarray], judged: list[JudgedQuery], *,
            recall_at_k: tuple[int, ...] = (100,)) -> dict[str, float | int]:
    """Mean NDCG@10 and Recall@k (each k of `recall_at_k`) over the queries where each is defined."""
    nd = [ndcg_at(r, j) for r, j in zip(rankings, judged, strict=True)]
    nd_ok = [x for x in nd if x is not None]
    out: dict[str, float | int] = {"ndcg@10": float(np.mean(nd_ok)) if nd_ok else 0.0}
    n_recall = 0
    for k in recall_at_k:
        rc_ok = [x for r, j in zip(rankings, judged, strict=True) if (x := recall_at(r, j, k)) is not None]
        out[f"recall@{k}"] = float(np.mean(rc_ok)) if rc_ok else 0.0
        n_recall = len(rc_ok)
    return {**out, "queries_ndcg": len(nd_ok), "queries_recall": n_recall}


def is_held_out(query: str) -> bool:
    """Whether a development query belongs to the fixed 20% that no fit ever sees (fold 0 of 5 by its hash)."""
    return fold_of(query, HOLDOUT_FOLDS) == 0


def holdout_split(judged: list[JudgedQuery]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the queries that may be fitted on (80%) and of the held-out ones (20%)."""
    out = np.array([is_held_out(j.query) for j in judged], dtype=bool)
    return np.flatnonzero(~out), np.flatnonzero(out)


def bm25_baseline(titles: list[str], queries: list[str], k: int = 100) -> list[np.ndarray]:
    """Plain bm25s: English stemmer and stopwords, titles only, default BM25 parameters."""
    stemmer = Stemmer.Stemmer("english")
    corpus = bm25s.tokenize(titles, stopwords="en", stemmer=stemmer, show_progress=False)
    model = bm25s.BM25()
    model.index(corpus, show_progress=False)
    out = []
    for q in queries:
        toks = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)[0]
        scores = model.get_scores(toks) if toks else np.zeros(len(titles))
        idx = np.flatnonzero(scores > 0)
        if len(idx) > k:
            idx = idx[np.argpartition(-scores[idx], k)[:k]]
        out.append(idx[np.argsort(-scores[idx], kind="stable")])
    return out


def prepare(engine: SearchEngine, queries: list[str], *, features: bool = True, list_depth: int = 0,
            progress: Progress | None = None,
            memories: Sequence[SearchMemory | None] | None = None) -> list[Prepared]:
    """Retrieve and fuse candidates for every query (dense side batched) and compute the head features; with
    `list_depth`, also keep each retriever's own top rows to that depth (`retriever_lists`) and the query types.
    `memories` gives each query its own search memory (cross-fitting: never one holding the query's own log
    entries); by default every query gets the engine's."""
    parsed = [engine.understand(q) for q in queries]
    dense_rows: np.ndarray | None = None
    k_dense = max(engine.config.k_dense, list_depth)
    if engine.dense is not None and engine.embedder is not None:
        vecs = engine.embedder.embed_texts([engine.embedding_query(pq) for pq, _ in parsed])
        dense_rows, _ = engine.dense.search_batch(vecs, k_dense)
    else:
        vecs = None
    out = []
    for i, (pq, terms) in enumerate(parsed):
        qvec = None if vecs is None else vecs[i]
        drows = None if dense_rows is None else dense_rows[i]
        memory = engine.memory if memories is None else memories[i]
        recollection = None if memory is None or qvec is None else memory.recall(qvec)
        cand = engine.retriever.candidates(terms, qvec, k_lex=engine.config.k_lex, k_dense=engine.config.k_dense,
                                           dense_rows=drows, fusion=engine.fusion, recollection=recollection,
                                           k_memory=engine.config.k_memory)
        ranked = engine.eligible(cand, terms)
        x = engine.head_features(pq, terms, ranked) if features else np.zeros((0, 0), np.float32)
        p = Prepared(rows=ranked.rows, features=x,
                     memory_sim=0.0 if recollection is None else recollection.top_sim)
        if list_depth:
            p.lists = {**retriever_lists(engine, terms, cand, qvec, drows, list_depth),
                       "fused": ranked.rows[:list_depth].astype(np.int32)}
            if recollection is not None:
                p.lists["memory"] = recollection.top(list_depth).astype(np.int32)
            p.types = querytypes.classify(pq, terms, engine.lexical)
        out.append(p)
        if progress is not None and (i % 200 == 0 or i == len(parsed) - 1):
            progress("retrieving", i + 1, len(parsed))
    return out


def search_memory(engine: SearchEngine, judged: Sequence[JudgedQuery]) -> SearchMemory:
    """A search memory of judged (or logged) queries, their vectors made as the engine makes a query's: the same
    encoder, over the same text the dense side embeds (`SearchEngine.embedding_query`)."""
    if engine.embedder is None or engine.dense is None:
        raise ValueError("a search memory needs the dense side (its logged queries are found by their vectors)")
    texts = [engine.embedding_query(engine.understand(j.query)[0]) for j in judged]
    return SearchMemory.from_logged(judged, engine.embedder.embed_texts(texts))


def cross_fitted_memories(engine: SearchEngine, judged: list[JudgedQuery], fit_idx: np.ndarray,
                          folds: int = HOLDOUT_FOLDS) -> tuple[list[SearchMemory], SearchMemory]:
    """Each query's search memory such that it never holds the query's own judgments, and the memory of every
    fitted query (what a held-out query, and the served engine, get).

    The memory is the fitted queries' judgments. A fitted query in fold k (`fold_of(query, folds)`: identical
    normalised queries share a fold) gets the memory of the fitted queries of the OTHER folds, so the reranker
    learns how far to trust the memory on queries it does not hold; a held-out query gets all of it."""
    fitted = search_memory(engine, [judged[i] for i in fit_idx])
    fold_of_fitted = np.array([fold_of(judged[i].query, folds) for i in fit_idx])
    per_fold = {f: fitted.without(fold_of_fitted == f) for f in np.unique(fold_of_fitted).tolist()}
    fit_set = set(np.asarray(fit_idx).tolist())
    return [per_fold[fold_of(j.query, folds)] if i in fit_set else fitted for i, j in enumerate(judged)], fitted


def retriever_lists(engine: SearchEngine, terms: QueryTerms, cand: Candidates, qvec: np.ndarray | None,
                    dense_rows: np.ndarray | None, depth: int) -> dict[str, np.ndarray]:
    """Each retriever's own top `depth` rows for one query (int32): `bm25:FIELD` for every indexed field,
    `lexical` (the field-weighted sum), `dense`, and `fused` (the eligible fused candidates); plus what the fusion
    tuning needs to rebuild the fused list for other settings: `lexical_ok` (whether each `lexical` row matches
    enough query words) and `dense_sim` (each `dense` row's cosine)."""
    assert cand.lex_all is not None and cand.matched_all is not None
    out: dict[str, np.ndarray] = {}
    for name, scores in cand.fields_all.items():
        out[f"bm25:{name}"] = top_k(scores, depth).astype(np.int32)
    lex = top_k(cand.lex_all, depth)
    out["lexical"] = lex.astype(np.int32)
    out["lexical_ok"] = cand.matched_all[lex] >= engine.min_match(terms) if terms.tokens else np.ones(len(lex), bool)
    if dense_rows is not None and engine.dense is not None and qvec is not None:
        d = dense_rows[dense_rows >= 0][:depth]
        out["dense"] = d.astype(np.int32)
        out["dense_sim"] = engine.dense.similarity(qvec, d).astype(np.float32)
    return out


def head_gains(prep: list[Prepared], judged: list[JudgedQuery]) -> list[np.ndarray]:
    """Training labels: the gain of each head candidate (0 when unjudged)."""
    out = []
    for p, j in zip(prep, judged, strict=True):
        gain = {int(r): g for r, g in zip(j.rows, j.gains, strict=True) if r >= 0}
        out.append(np.array([gain.get(int(r), 0.0) for r in p.rows[:len(p.features)]], dtype=np.float64))
    return out


def fit(prep: list[Prepared], labels: list[np.ndarray], idx: np.ndarray | list[int], *, threads: int = 1,
        params: dict[str, object] | None = None, rounds: int | None = None) -> Reranker:
    """A reranker trained on queries `idx` (`params` / `rounds` override the defaults of `aisle.search.rerank`)."""
    keep = [i for i in idx if len(prep[i].features)]
    x = np.vstack([prep[i].features for i in keep])
    y = np.concatenate([labels[i] for i in keep])
    return Reranker.fit(x, y, [len(prep[i].features) for i in keep], threads=threads, params=params,
                        **({} if rounds is None else {"rounds": rounds}))


def apply(model: Reranker, p: Prepared) -> np.ndarray:
    """Rows in final order: the head reranked, the rest in fusion order."""
    if not len(p.features):
        return p.rows
    s = model.predict(p.features, threads=1)
    d = len(s)
    return np.concatenate([p.rows[:d][np.argsort(-s, kind="stable")], p.rows[d:]])


def fold_of(query: str, folds: int) -> int:
    return int(hashlib.md5(normalize(query).encode()).hexdigest()[:8], 16) % folds


def cross_validated(prep: list[Prepared], judged: list[JudgedQuery], folds: int,
                    progress: Progress | None = None, *, params: dict[str, object] | None = None,
                    rounds: int | None = None) -> tuple[list[np.ndarray], Reranker | None]:
    """Rankings where each query's reranker never saw it; also the model of the last fold (for importances)."""
    labels = head_gains(prep, judged)
    fold = np.array([fold_of(j.query, folds) for j in judged])
    rankings: list[np.ndarray] = [p.rows for p in prep]
    model = None
    for f in range(folds):
        if progress is not None:
            progress("training", f, folds)
        train = np.flatnonzero(fold != f)
        model = fit(prep, labels, train, params=params, rounds=rounds)
        for i in np.flatnonzero(fold == f):
            rankings[i] = apply(model, prep[i])
    if progress is not None:
        progress("training", folds, folds)
    return rankings, model


def judgments_from_events(events: pl.DataFrame, *, max_after: int = 10) -> pl.DataFrame:
    """Implicit judgments from a store's log: what shoppers did right after a search, in the same session.

    Every search event is followed (same session, before the next search, at most `max_after` events) by item
    events; an item clicked, carted or bought gets relevance 3, one only viewed 2. Columns query, item_id,
    relevance (the Home Depot scale), so the reranker trains on a store's own logs exactly as on human labels.
    """
    ev = (events.filter(pl.col("session_id").is_not_null())
          .sort("session_id", "timestamp")
          .with_columns(pl.int_range(pl.len()).over("session_id").alias("_pos"),
                        (pl.col("event_type") == "search").cum_sum().over("session_id").alias("_search_no")))
    searches = ev.filter(pl.col("event_type") == "search").select(
        "session_id", "_search_no", pl.col("query").alias("_q"), pl.col("_pos").alias("_qpos"))
    strong = pl.col("event_type").is_in(["click", "add_to_cart", "purchase"])
    follow = (ev.filter(pl.col("item_id").is_not_null())
              .join(searches, on=["session_id", "_search_no"], how="inner")
              .filter(pl.col("_pos") - pl.col("_qpos") <= max_after)
              .with_columns(pl.when(strong).then(3.0).otherwise(2.0).alias("relevance")))
    return (follow.group_by(pl.col("_q").alias("query"), "item_id").agg(pl.col("relevance").max())
            .filter(pl.col("query").is_not_null()).sort("query", "item_id"))
