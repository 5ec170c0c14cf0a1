"""Evaluation without leakage (the fixed held-out 20%) and the fusion tuning over kept retriever lists."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.search import evaluate as ev
from aisle.search import tune
from aisle.search.engine import SearchEngine
from aisle.search.retrieve import Fusion
from aisle.types import items_frame
from tests.unit.search.test_engine import HYBRID


@pytest.fixture(scope="module")
def store():
    return generate(SyntheticConfig(n_items=800, n_users=200, n_events=12_000, seed=3))


def test_the_held_out_fifth_is_fixed_and_never_fitted(store) -> None:
    engine = SearchEngine.build(store.items, dense=False)
    judged = ev.judged_queries(ev.judgments_from_events(store.events), engine)
    fit, held = ev.holdout_split(judged)
    assert len(fit) + len(held) == len(judged) and not set(fit) & set(held)
    assert 0.1 < len(held) / len(judged) < 0.3
    assert all(ev.fold_of(judged[i].query, 5) == 0 for i in held)
    assert ev.is_held_out(judged[held[0]].query.upper())  # by the normalised text: case does not move a query
    again = ev.holdout_split(ev.judged_queries(ev.judgments_from_events(store.events), engine))
    assert [a.tolist() for a in again] == [fit.tolist(), held.tolist()]


def _same_as_engine(engine: SearchEngine, queries: list[str], setting: tune.FusionSetting) -> None:
    """The tuner's rebuilt fused list equals what the engine retrieves when configured with that setting."""
    kept = ev.prepare(engine, queries, features=False, list_depth=300)
    tuned = replace(engine.config, rrf_k=setting.fusion.rrf_k, dense_weight=setting.fusion.dense_weight,
                    k_lex=setting.k_lex, k_dense=setting.k_dense, k_lex_any=setting.k_lex_any)
    configured = SearchEngine(engine.catalog, engine.lexical, engine.dense, engine.spell, embedder=engine.embedder,
                              config=tuned)
    served = ev.prepare(configured, queries, features=False)
    for q, k, s in zip(queries, kept, served, strict=True):
        rebuilt = tune.fused_rows(k.lists, setting, engine.config.dense_min_similarity)
        assert rebuilt.tolist() == s.rows.tolist(), q


def test_fused_lists_rebuilt_from_kept_lists_match_retrieval(store) -> None:
    engine = SearchEngine.build(store.items, dense=False)
    queries = store.events.filter(pl.col("event_type") == "search")["query"].unique().sort().to_list()[:40]
    for setting in (tune.FusionSetting(Fusion(), 200, 200), tune.FusionSetting(Fusion(10.0, 1.5), 50, 50, 20)):
        _same_as_engine(engine, queries, setting)


def test_fused_lists_with_a_dense_side(tmp_path: Path) -> None:
    engine = SearchEngine.build(items_frame(HYBRID), cache_dir=tmp_path / "cache")
    queries = ["cordless drill", "something to water the yard", "hammer", "grey couch"]
    for setting in (tune.FusionSetting(Fusion(), 200, 200), tune.FusionSetting(Fusion(5.0, 3.0), 2, 3, 1)):
        _same_as_engine(engine, queries, setting)


def test_tune_fusion_picks_the_best_recall_on_the_given_queries_only(store) -> None:
    engine = SearchEngine.build(store.items, dense=False)
    judged = ev.judged_queries(ev.judgments_from_events(store.events), engine)
    prep = ev.prepare(engine, [j.query for j in judged], features=False, list_depth=100)
    fit, _ = ev.holdout_split(judged)
    grid = [tune.FusionSetting(Fusion(), 5, 5), tune.FusionSetting(Fusion(), 100, 100)]
    best, trials = tune.tune_fusion(prep, judged, fit, depth=20, dense_min_similarity=0.3, grid=grid)
    assert best == grid[1] and trials[1]["recall@20"] > trials[0]["recall@20"]  # 5 candidates cannot fill 20
    # held-out queries do not count: tuning on them alone can give other scores
    assert len(trials) == 2 and {"rrf_k", "dense_weight", "k_lex", "ndcg@10"} <= set(trials[0])


def test_choose_fusion_trades_recall_for_ndcg_only_within_the_slack() -> None:
    trials = [{"recall@150": 0.850, "ndcg@10": 0.40}, {"recall@150": 0.846, "ndcg@10": 0.45},
              {"recall@150": 0.830, "ndcg@10": 0.47}, {"recall@150": 0.850, "ndcg@10": 0.41}]
    assert tune.choose_fusion(trials, depth=150) == 3  # the most recall, then NDCG@10
    assert tune.choose_fusion(trials, depth=150, recall_slack=0.005) == 1  # within 0.005 of the best recall
    assert tune.choose_fusion(trials, depth=150, recall_slack=1.0) == 2  # plain NDCG@10 of the fused list


def test_retriever_lists_and_recall_at_two_depths(store) -> None:
    engine = SearchEngine.build(store.items, dense=False)
    judged = ev.judged_queries(ev.judgments_from_events(store.events), engine)[:60]
    prep = ev.prepare(engine, [j.query for j in judged], list_depth=200)
    assert {"lexical", "fused", "bm25:title", "bm25:description"} <= set(prep[0].lists)
    assert all(len(p.lists["bm25:title"]) <= 200 for p in prep)
    m = ev.metrics([p.lists["lexical"] for p in prep], judged, recall_at_k=(10, 200))
    assert 0 <= m["recall@10"] <= m["recall@200"] <= 1
    assert all(p.types for p in prep)
    x = np.vstack([p.features for p in prep if len(p.features)])
    assert np.isfinite(x).all()
