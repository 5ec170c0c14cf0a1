"""Conversational refinement end to end: the scripted multi-turn tasks of `tests/fixtures/refinement/tasks.json`
(made from the synthetic catalog's attributes by `make_tasks.py` there), each played turn by turn through
`/search?conversation=...`, must end in the constraint the shopper meant, with every hit shown satisfying it.
The acceptance bar is a task success rate of at least 90%."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aisle.config import Settings
from aisle.data.synthetic import SyntheticConfig
from aisle.pipeline import SourceSpec
from aisle.query import fold
from aisle.search.refine import size_of
from aisle.serve import create_app
from tests.bundles import save_bundle, synthetic_shop

TASKS = Path(__file__).resolve().parents[1] / "fixtures" / "refinement" / "tasks.json"
SOURCES = (SourceSpec("itemknn", "itemknn", "i2i", decay=0.7), SourceSpec("trending", "trending", "trending"))


@pytest.fixture(scope="module")
def tasks() -> dict[str, Any]:
    return json.loads(TASKS.read_text())


@pytest.fixture(scope="module")
def client(tasks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    shop = synthetic_shop(SyntheticConfig.from_dict(tasks["catalog"]))
    out = tmp_path_factory.mktemp("bundle") / "b"
    save_bundle(shop, SOURCES, out, rounds=20)
    with TestClient(create_app(Settings(bundle=out, search_cache=0))) as c:
        yield c


def _problems(task: dict[str, Any], answers: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the final answer of a task (empty: success)."""
    want, last = task["expect"], answers[-1]
    ref = last["refinement"]
    c, f = ref["constraints"], ref["constraints"]["filters"]
    out = []
    if fold(c["query"]) != fold(want["query"]):
        out.append(f"query {c['query']!r} != {want['query']!r}")
    if want.get("color") and f.get("attributes", {}).get("color") != [want["color"]]:
        out.append(f"color {f.get('attributes', {}).get('color')} != {want['color']}")
    if [fold(b) for b in f.get("brands", [])] != ([fold(want["brand"])] if want.get("brand") else []):
        out.append(f"brands {f.get('brands')} != {want.get('brand')}")
    if {fold(b) for b in f.get("exclude_brands", [])} != {fold(b) for b in want.get("exclude", [])}:
        out.append(f"exclude_brands {f.get('exclude_brands')} != {want.get('exclude')}")
    if "price_max" in want and f.get("price_max") != want["price_max"]:
        out.append(f"price_max {f.get('price_max')} != {want['price_max']}")
    if bool(f.get("available")) != bool(want.get("in_stock")):
        out.append(f"available {f.get('available')} != {want.get('in_stock')}")
    if c["sort"] != want.get("sort", "relevance"):
        out.append(f"sort {c['sort']} != {want.get('sort', 'relevance')}")
    if "cheaper" in want:
        before = [h["price"] for h in answers[want["cheaper"]["turn"] - 1]["hits"] if h.get("price") is not None]
        if f.get("price_max") is None or not before or f["price_max"] >= statistics.median(before):
            out.append(f"cheaper: price_max {f.get('price_max')} not below what was shown")
    if "bigger" in want:
        turn = answers[want["bigger"]["turn"]]["refinement"]
        change = next((ch for ch in turn["changes"] if ch["kind"] == "bigger"), None)
        values = f.get("attributes", {}).get(change["key"], []) if change else []
        if not values or any((size_of(v) or 0) <= change["reference"] for v in values):
            out.append(f"bigger: {values} not above the sizes shown")
    if "like" in want:
        shown = answers[want["like"]["turn"] - 1]["hits"]
        wanted = shown[want["like"]["position"] - 1]["item_id"] if len(shown) >= want["like"]["position"] else None
        if c["like"] is None or c["like"] != wanted:
            out.append(f"like {c['like']} != {wanted}")
    elif c["like"] is not None:
        out.append(f"like {c['like']} not asked for")
    for h in last["hits"]:  # the page honours the constraints
        if want.get("color") and want["color"] not in json.dumps(h).lower() and want["color"] not in fold(h["title"]):
            out.append(f"hit {h['item_id']} is not {want['color']}")
        if want.get("brand") and fold(h["brand"] or "") != fold(want["brand"]):
            out.append(f"hit {h['item_id']} is {h['brand']}, not {want['brand']}")
        if fold(h["brand"] or "") in {fold(b) for b in want.get("exclude", [])}:
            out.append(f"hit {h['item_id']} is an excluded {h['brand']}")
        if f.get("price_max") is not None and h["price"] is not None and h["price"] > f["price_max"]:
            out.append(f"hit {h['item_id']} costs {h['price']} > {f['price_max']}")
        if want.get("in_stock") and not h["available"]:
            out.append(f"hit {h['item_id']} is out of stock")
    return out


def test_scripted_refinement_tasks_succeed(client: TestClient, tasks: dict[str, Any]) -> None:
    assert len(tasks["tasks"]) >= 100
    failed = {}
    for task in tasks["tasks"]:
        answers = []
        for turn in task["turns"]:
            r = client.get("/search", params={"q": turn, "conversation": f"task-{task['id']}"})
            assert r.status_code == 200, (task["id"], turn, r.text)
            answers.append(r.json())
        if problems := _problems(task, answers):
            failed[task["id"]] = (task["turns"], problems)
    rate = 1 - len(failed) / len(tasks["tasks"])
    print(f"refinement task success: {rate:.3f} ({len(tasks['tasks']) - len(failed)}/{len(tasks['tasks'])})")
    for tid, (turns, problems) in list(failed.items())[:20]:
        print(tid, turns, problems)
    assert rate >= 0.9, failed
