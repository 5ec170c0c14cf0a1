"""The quick way into GET /users/{id}/recommendations (`aisle.serve.quick`) answers as the FastAPI route does.

Two apps over one bundle, `quick_routes` on and off, get the same random requests, valid and not (odd numbers,
repeated parameters, over-long session ids, impossible price ranges, encoded paths): the status, the body (but for
its request id and timing) and the metrics' route name must match, and the quick way must have taken the valid
ones (else this test would compare FastAPI with itself).
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisle.config import Settings
from aisle.data.readers.base import Dataset
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.serve import create_app, quick
from tests.bundles import save_bundle, synthetic_shop

SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return synthetic_shop(SyntheticConfig(n_items=300, n_users=120, n_events=5_000, seed=4))


@pytest.fixture(scope="module")
def apps(shop: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, TestClient]]:
    out = save_bundle(shop, SOURCES, tmp_path_factory.mktemp("bundle") / "b", rounds=10, search=False)
    quick_on, quick_off = Settings(bundle=out, max_k=50), Settings(bundle=out, max_k=50, quick_routes=False)
    with TestClient(create_app(quick_on)) as a, TestClient(create_app(quick_off)) as b:
        yield a, b


def _request(rng: random.Random, users: list[str], items: list[str], brands: list[str], cats: list[str]) -> str:
    user = rng.choice([*users[:20], "nobody", "a b", "ü-ser", "x%2Fy", "", "%00"])
    params: list[tuple[str, str]] = []
    pick: dict[str, Any] = {
        "k": lambda: rng.choice(["1", "10", "50", "007", "0", "51", "-3", "+5", " 5", "5.0", "abc", "", "1e2", "٣",
                                 "99999999999"]),
        "category": lambda: rng.choice([*cats[:4], "", "  ", "Nowhere", cats[0].upper()]),
        "brand": lambda: rng.choice([*brands[:4], "", "Nobrand"]),
        "price_min": lambda: rng.choice(["0", "5", "12.5", "", "-1", "1e3", "nan", "inf", " 3", "7."]),
        "price_max": lambda: rng.choice(["1", "40", "99.99", "", "0.5", "abc"]),
        "context_item": lambda: rng.choice([*items[:5], "", "missing"]),
        "exclude": lambda: rng.choice([*items[:10], "", "missing"]),
        "session_id": lambda: rng.choice(["", "s-1", "x" * 256, "x" * 257, "ses sion"]),
        "unrelated": lambda: rng.choice(["1", ""]),
    }
    for name in rng.sample(list(pick), rng.randrange(0, 5)):
        for _ in range(rng.choice([1, 1, 1, 2])):  # sometimes repeated
            params.append((name, pick[name]()))
    path = f"/users/{urllib.parse.quote(user, safe='%')}/recommendations"
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("request_id", "took_ms")}


def test_the_quick_way_answers_every_request_as_fastapi_does(apps: tuple[TestClient, TestClient],
                                                            shop: Dataset) -> None:
    on, off = apps
    rng = random.Random(5)
    users = sorted(shop.events["user_id"].unique().to_list())
    items = sorted(shop.items["item_id"].to_list())
    brands = sorted({b for b in shop.items["brand"].to_list() if b})
    cats = sorted({c for path in shop.items["categories"].to_list() for c in path or ()})
    svc = on.app.state.services  # type: ignore[attr-defined]
    statuses: dict[int, int] = {}
    taken = 0
    for _ in range(400):
        url = _request(rng, users, items, brands, cats)
        a, b = on.get(url), off.get(url)
        assert a.status_code == b.status_code, url
        statuses[a.status_code] = statuses.get(a.status_code, 0) + 1
        assert a.headers["content-type"] == b.headers["content-type"], url
        if a.status_code == 200:
            assert _comparable(a.json()) == _comparable(b.json()), url
            assert a.headers["x-request-id"] == a.json()["request_id"] != b.json()["request_id"]
        else:
            assert a.json() == b.json(), url
        path, _, query = url.partition("?")
        scope = {"type": "http", "method": "GET", "path": urllib.parse.unquote(path),
                 "query_string": query.encode("latin-1"), "root_path": ""}
        taken += asyncio.run(quick.answer(svc, scope)) is not None
    assert statuses.get(200, 0) > 100 and statuses.get(422, 0) > 50, statuses  # both kinds were compared
    assert taken > 100  # the quick way took the valid ones
    # its requests are counted under the route's template, as FastAPI's are
    stats = on.get("/api/stats").json()["traffic"]
    assert "/users/{user_id}/recommendations" in str(stats)
