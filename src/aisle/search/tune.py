"""Choosing search's settings on development queries only: the fusion and the reranker's hyperparameters.

Why a grid over kept lists: the fused candidate list is a pure function of each retriever's own ranking, so once
every query's lexical and dense top lists are kept (`evaluate.prepare(list_depth=...)`), any fusion setting (RRF k,
the dense list's weight, how deep each list is read, how many of the best lexical hits count whatever share of the
query words they hold) is rebuilt in microseconds per query, without retrieving
again: a grid of dozens of settings costs about a second each. The objective is what the reranker can use: the
recall of the first `depth` fused candidates (the reranker's reach), ties broken by the fused list's own NDCG@10.
Trading some of that recall for the fused list's NDCG@10 (`recall_slack`) makes a better list for a search without
a reranker and a worse one with it: the reranker reorders the head whatever its fused order, so what it is given
counts, not how it is ordered (benchmarks/RESULTS.md, "The fusion tuned for NDCG@10").

The reranker's hyperparameters are chosen by query-grouped cross-validation among the queries given (the caller
passes the development 80%, never the held-out queries); the grid is small on purpose (each fit is tens of seconds
on a 2-core machine).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from aisle.search import evaluate as ev
from aisle.search.retrieve import Fusion, fuse

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FusionSetting:
    fusion: Fusion
    k_lex: int
    k_dense: int
    k_lex_any: int = 0  # `SearchConfig.k_lex_any`


def fused_rows(lists: dict[str, np.ndarray], setting: FusionSetting, dense_min_similarity: float) -> np.ndarray:
    """The eligible fused candidates of one query under `setting`, in fusion order: what
    `Retriever.candidates` + `SearchEngine.eligible` return with those settings, from the kept lists."""
    lex = lists["lexical"][:setting.k_lex].astype(np.int64)
    ok_lex = lists["lexical_ok"][:setting.k_lex] | (np.arange(len(lex)) < setting.k_lex_any)
    dense = lists.get("dense", np.zeros(0, np.int32))[:setting.k_dense].astype(np.int64)
    sim = lists.get("dense_sim", np.zeros(0, np.float32))[:setting.k_dense]
    rows = np.unique(np.concatenate([lex, dense]))
    lex_rank = np.zeros(len(rows), np.float32)
    dense_rank = np.zeros(len(rows), np.float32)
    lex_rank[np.searchsorted(rows, lex)] = np.arange(1, len(lex) + 1)
    dense_rank[np.searchsorted(rows, dense)] = np.arange(1, len(dense) + 1)
    eligible = np.zeros(len(rows), bool)
    eligible[np.searchsorted(rows, lex[ok_lex])] = True
    eligible[np.searchsorted(rows, dense[sim >= dense_min_similarity])] = True
    rrf = fuse(lex_rank, dense_rank, setting.fusion)
    idx = np.flatnonzero(eligible)
    return rows[idx[np.argsort(-rrf[idx], kind="stable")]]


def fusion_grid(rrf_k: Sequence[float] = (10.0, 30.0, 60.0),
                dense_weight: Sequence[float] = (0.25, 0.5, 1.0, 1.5),
                depth: Sequence[int] = (200, 300), any_match: Sequence[int] = (0, 50, 150)) -> list[FusionSetting]:
    return [FusionSetting(Fusion(k, w), d, d, a)
            for k, w, d, a in itertools.product(rrf_k, dense_weight, depth, any_match)]


def tune_fusion(prep: list[ev.Prepared], judged: list[ev.JudgedQuery], idx: Sequence[int], *, depth: int,
                dense_min_similarity: float, grid: list[FusionSetting] | None = None,
                recall_slack: float = 0.0,
                progress: Progress | None = None) -> tuple[FusionSetting, list[dict[str, float]]]:
    """The chosen setting (`choose_fusion`) of the fused lists over queries `idx`, and every setting's scores (for
    the report)."""
    grid = grid or fusion_grid()
    sub = [judged[i] for i in idx]
    trials = []
    for n, s in enumerate(grid):
        ranked = [fused_rows(prep[i].lists, s, dense_min_similarity) for i in idx]
        m = ev.metrics(ranked, sub, recall_at_k=(depth,))
        trials.append({"rrf_k": s.fusion.rrf_k, "dense_weight": s.fusion.dense_weight, "k_lex": s.k_lex,
                       "k_dense": s.k_dense, "k_lex_any": s.k_lex_any, "ndcg@10": round(float(m["ndcg@10"]), 4),
                       f"recall@{depth}": round(float(m[f"recall@{depth}"]), 4)})
        if progress is not None:
            progress("tuning fusion", n + 1, len(grid))
    return grid[choose_fusion(trials, depth=depth, recall_slack=recall_slack)], trials


def choose_fusion(trials: Sequence[dict[str, float]], *, depth: int, recall_slack: float = 0.0) -> int:
    """Index of the trial with the best NDCG@10 among those whose Recall@`depth` is within `recall_slack` of the
    best one. Slack 0 is "the most recall, then NDCG@10"; a large slack is plain NDCG@10 of the fused list.

    Why a floor and not plain recall: the reranker can only use what the first `depth` candidates hold, so recall
    there must not be given away, but the settings within a hair of the best recall differ widely in how good the
    fused order itself is (the reranker's features include each candidate's fusion score and ranks)."""
    top = max(t[f"recall@{depth}"] for t in trials)
    ok = [i for i, t in enumerate(trials) if t[f"recall@{depth}"] >= top - recall_slack - 1e-12]
    return max(ok, key=lambda i: (trials[i]["ndcg@10"], trials[i][f"recall@{depth}"]))


#: the reranker's hyperparameter grid: (name, LightGBM params, boosting rounds). Rounds stay at 200 or below:
#: prediction time grows with the number of trees, and the reranker runs inside every search request.
RERANK_GRID: tuple[tuple[str, dict[str, object], int], ...] = (
    ("leaves31-lr0.05-r200", {"num_leaves": 31, "min_data_in_leaf": 50, "learning_rate": 0.05}, 200),
    ("leaves63-lr0.05-r200", {"num_leaves": 63, "min_data_in_leaf": 100, "learning_rate": 0.05}, 200),
    ("leaves15-lr0.1-r200", {"num_leaves": 15, "min_data_in_leaf": 50, "learning_rate": 0.1}, 200),
    ("leaves31-lr0.1-r100", {"num_leaves": 31, "min_data_in_leaf": 200, "learning_rate": 0.1}, 100),
)


def tune_reranker(prep: list[ev.Prepared], judged: list[ev.JudgedQuery], idx: Sequence[int], *, folds: int = 3,
                  grid: Sequence[tuple[str, dict[str, object], int]] = RERANK_GRID,
                  progress: Progress | None = None) -> tuple[tuple[str, dict[str, object], int], list[dict]]:
    """The grid entry with the best NDCG@10 under query-grouped `folds`-fold CV among queries `idx` only."""
    idx = np.asarray(idx)
    labels = ev.head_gains(prep, judged)
    fold = np.array([ev.fold_of(judged[i].query, folds) for i in idx])
    trials = []
    steps, step = len(grid) * folds, 0
    for name, params, rounds in grid:
        ranked: dict[int, np.ndarray] = {}
        for f in range(folds):
            model = ev.fit(prep, labels, idx[fold != f], params=params, rounds=rounds)
            for i in idx[fold == f]:
                ranked[int(i)] = ev.apply(model, prep[i])
            step += 1
            if progress is not None:
                progress("tuning reranker", step, steps)
        order = sorted(ranked)
        m = ev.metrics([ranked[i] for i in order], [judged[i] for i in order])
        trials.append({"name": name, "params": params, "rounds": rounds, "ndcg@10": round(float(m["ndcg@10"]), 4)})
    best = max(range(len(grid)), key=lambda i: trials[i]["ndcg@10"])
    return grid[best], trials
