"""A refresh folds new events and catalog changes into a bundle without a refit: what it moves ends where one fold
of everything would (so refreshing in many small steps counts nothing twice and loses nothing), a new item that
shoppers buy reaches the served trending list, and changed catalog rows reach the search index."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from aisle.bundle import Bundle, build_serving_bundle
from aisle.config import Settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig, generate
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.serve.runtime import Runtime
from aisle.types import ITEM_SCHEMA, Event, EventType, Item, conform, events_frame, items_frame
from aisle.worker.refresh import fold

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("markov", "markov", "i2i", window=5),
           SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def shop() -> tuple[Dataset, pl.DataFrame]:
    """(the store's first 80% of events as a Dataset, the newest 20%)."""
    s = generate(SyntheticConfig(n_items=300, n_users=150, n_events=10_000, seed=8))
    events = s.events.sort("timestamp")
    cut = int(events.height * 0.8)
    return Dataset(name="shop", items=s.items, users=s.users, events=events.slice(0, cut)), events.slice(cut)


@pytest.fixture
def bundle(shop: tuple[Dataset, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    data, _ = shop
    b = build_serving_bundle(data, PipelineConfig(sources=SOURCES, rounds=10), dense=False)
    out = tmp_path_factory.mktemp("b") / "bundle"
    b.save(out, data_fingerprint="x", metrics=b.manifest["metrics"])
    return Bundle.load(out)  # as the worker reads it: from disk


def _reload(b: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    out = tmp_path_factory.mktemp("r") / "bundle"
    b.save(out, data_fingerprint="y")
    return Bundle.load(out)


def test_many_small_refreshes_end_where_one_does(bundle: Bundle, shop: tuple[Dataset, pl.DataFrame],
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    _, new = shop
    # shoppers new since the bundle have no stored history until the refit, so their transition from one refresh
    # into the next is not linked (documented in aisle.worker.refresh); the known shoppers' are, exactly
    new = new.filter(pl.col("user_id").is_in(bundle.users.ids.tolist()))
    one = _reload(bundle, tmp_path_factory)
    fold(one, new)
    steps = _reload(bundle, tmp_path_factory)
    for chunk in np.array_split(np.arange(new.height), 5):  # in insertion order, as the store hands them out
        fold(steps, new[chunk.tolist()])
        steps = _reload(steps, tmp_path_factory)  # each refresh is a new version, saved and loaded again
    assert one.pipeline is not None and steps.pipeline is not None
    a, b = one.pipeline.source("markov").model, steps.pipeline.source("markov").model
    assert abs(a.transitions - b.transitions).sum() == 0  # shoppers' transitions across refreshes are linked
    np.testing.assert_allclose(one.pipeline.source("trending").counts, steps.pipeline.source("trending").counts,
                               rtol=1e-6)
    np.testing.assert_allclose(one.pipeline.popularity, steps.pipeline.popularity, rtol=1e-6)
    before = bundle.pipeline.source("markov").model  # type: ignore[union-attr]
    assert abs(a.transitions - before.transitions).sum() > 100  # and they did move


def test_a_new_item_bought_by_many_reaches_trending_and_search(bundle: Bundle) -> None:
    newest = bundle.histories.times.max()  # type: ignore[union-attr]
    at = pl.Series([int(newest)]).cast(pl.Datetime("us", "UTC"))[0] + timedelta(minutes=1)
    item = items_frame([Item("brand-new", title="Aurora trail lantern", brand="Lumen",
                             categories=("Outdoors", "Lights"), price=39.0)])
    buys = events_frame([Event(f"u-new-{k}", "brand-new", EventType.PURCHASE, at + timedelta(seconds=k))
                         for k in range(40)])
    settings = Settings()
    assert "brand-new" not in [c["item_id"] for c in Runtime(bundle, settings).trending(5)]
    catalog = pl.concat([conform(bundle.catalog, ITEM_SCHEMA).filter(pl.col("title").is_not_null()), item])
    done = fold(bundle, buys, catalog)
    assert (done.events, done.new_items, done.changed_items) == (40, 1, 0)
    runtime = Runtime(bundle, settings)
    assert runtime.trending(1)[0]["item_id"] == "brand-new"
    assert runtime.search is not None
    assert runtime.search.search("aurora lantern").to_json()["hits"][0]["item_id"] == "brand-new"


def test_a_changed_catalog_row_is_applied_and_an_unchanged_catalog_changes_nothing(bundle: Bundle) -> None:
    catalog = bundle.catalog.filter(pl.col("title").is_not_null())  # type: ignore[union-attr]
    assert fold(bundle, events_frame([]), catalog).empty
    first = catalog["item_id"][0]
    changed = catalog.with_columns(pl.when(pl.col("item_id") == first).then(pl.lit(False))
                                   .otherwise(pl.col("available")).alias("available"))
    done = fold(bundle, events_frame([]), changed)
    assert (done.new_items, done.changed_items) == (0, 1)
    row = bundle.items.index[first]
    assert bundle.pipeline is not None and not bundle.pipeline.attrs.available[row]


def _fbt_counts(b: Bundle) -> tuple[int, dict[str, float], dict[tuple[str, str], float]]:
    """(baskets, baskets per item, baskets per pair) of a bundle's bought-together model, by item id."""
    assert b.pipeline is not None
    m = b.pipeline.source("fbt").model
    ids = m.item_ids.tolist()
    coo = m.pair_counts.tocoo()
    return (m.n_baskets, {i: c for i, c in zip(ids, m.item_counts.tolist(), strict=True) if c},
            {(ids[r], ids[c]): v for r, c, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(),
                                                     strict=True)})


def test_bought_together_after_refreshes_equals_a_refit_on_the_same_events(
        shop: tuple[Dataset, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Baskets, item and pair counts folded in refresh by refresh (baskets going on across a refresh included) are
    a fit's on all the events, and so are the rules and each item's bought-together neighbours."""
    data, new = shop
    new = new.filter(pl.col("user_id").is_in(data.events["user_id"].unique().implode()))  # see the test above
    config = PipelineConfig(sources=(SourceSpec("fbt", "fbt", "bought_together", params={"min_count": 2}),
                                     SourceSpec("trending", "trending", "trending")), rounds=10)
    built = build_serving_bundle(data, config, dense=False)
    out = tmp_path_factory.mktemp("fbt") / "bundle"
    built.save(out, data_fingerprint="x", metrics=built.manifest["metrics"])
    steps = Bundle.load(out)
    before = _fbt_counts(steps)
    rules_before = steps.pipeline.source("fbt").model.pairs()  # type: ignore[union-attr]
    for chunk in np.array_split(np.arange(new.height), 4):
        fold(steps, new[chunk.tolist()])
        steps = _reload(steps, tmp_path_factory)
    refit = build_serving_bundle(Dataset(name="shop", items=data.items, users=data.users,
                                         events=pl.concat([data.events, new])), config, dense=False)
    after, want = _fbt_counts(steps), _fbt_counts(refit)
    assert after == want
    assert after[0] > before[0] and len(after[2]) > len(before[2])  # the refreshes did count new baskets
    assert steps.pipeline is not None and refit.pipeline is not None
    mine, theirs = steps.pipeline.source("fbt"), refit.pipeline.source("fbt")
    assert mine.model.pairs().drop("a_idx", "b_idx").equals(theirs.model.pairs().drop("a_idx", "b_idx"))
    ids, ref = steps.items.ids.tolist(), refit.items.ids.tolist()
    for item in range(steps.pipeline.n_items):
        got, scores = mine.neighbours(item, 10)
        exp, exp_scores = theirs.neighbours(refit.items.index[ids[item]], 10)
        assert [ids[i] for i in got] == [ref[i] for i in exp], ids[item]
        np.testing.assert_allclose(scores, exp_scores, rtol=1e-6)
    rules = mine.model.pairs()
    new_rules = rules.join(rules_before, on=["item_a", "item_b"], how="anti")
    assert new_rules.height > 0  # rules that only the new events made (a neighbour row refreshed for each)
