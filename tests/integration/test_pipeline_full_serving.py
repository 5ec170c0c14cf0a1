"""The "full" feature group where it is served: a bundle whose user source scores every merged candidate answers
`/users/{id}/recommendations` in the order the same pipeline ranks offline, for a shopper the bundle has never
seen (the source encodes their live history per request: ALS folds it in), so what the benchmarks measure is what
a request computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aisle.bundle import Bundle, build_serving_bundle, fingerprint
from aisle.config import Settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig
from aisle.models.base import QueryBatch
from aisle.pipeline import PipelineConfig, SourceSpec
from aisle.serve import create_app
from tests.bundles import synthetic_shop

SOURCES = (SourceSpec("als", "als", "user", {"factors": 16, "iterations": 5}),
           SourceSpec("markov", "markov", "i2i", window=5, decay=0.5),
           SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=300, n_users=150, n_events=8_000, seed=5))


@pytest.fixture(scope="module")
def bundle_dir(shop: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full") / "bundle"
    config = PipelineConfig(sources=SOURCES, rounds=20, features=("tags", "full"))
    bundle = build_serving_bundle(shop, config, dense=False, search=False)
    bundle.save(out, data_fingerprint=fingerprint(shop.events), metrics=bundle.manifest["metrics"])
    return out


def test_a_new_shopper_is_ranked_as_offline_with_every_candidate_scored(bundle_dir: Path, shop: Dataset,
                                                                        tmp_path: Path) -> None:
    popular = shop.events.drop_nulls("item_id").group_by("item_id").len().sort(["len", "item_id"],
                                                                                descending=[True, False])
    viewed = [str(i) for i in popular["item_id"][:40:10]]  # four items far apart in popularity
    settings = Settings(bundle=bundle_dir, store=tmp_path / "live.duckdb")
    with TestClient(create_app(settings)) as client:
        events = [{"user_id": "fresh-shopper", "item_id": item, "event_type": "view", "event_id": f"f-{n}"}
                  for n, item in enumerate(viewed)]
        assert client.post("/events", json={"events": events}).json()["accepted"] == len(viewed)
        body = client.get("/users/fresh-shopper/recommendations", params={"k": 10}).json()
    served = [i["item_id"] for i in body["items"]]
    assert body["live_events"] == len(viewed) and len(served) == 10

    bundle = Bundle.load(bundle_dir, search=False)
    pipe = bundle.pipeline
    assert pipe is not None and pipe.feature_names()[-2:] == ["als_full", "als_full_rr"]
    history = np.asarray(bundle.items.encode(viewed), np.int64)
    cands = pipe.candidates(QueryBatch(np.array([-1]), [history]), exclude_history=False)
    # ALS scored every candidate, also those only Markov or trending proposed
    assert (cands.features.column("als_full_rr") > 0).all()
    assert (cands.features.column("als_rr") == 0).any()
    scores = pipe.rank(cands)
    ok = ~np.isin(cands.item, history) & pipe.attrs.available[cands.item]
    order = np.argsort(-scores[ok], kind="stable")
    offline = [bundle.items.ids[i] for i in cands.item[ok][order][:10]]
    assert served == offline
