"""The shopper's own rows and the search conversation in chromium: "Recently viewed" follows the products viewed,
"Buy it again" shows a consumable that is due, a two-turn refinement in the search box with undo, and every search
hit shows why it is there."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import polars as pl

from tests.e2e.conftest import Site, shot
from tests.e2e.helpers import ids, ready, texts


def _as(page: Any, user: str) -> None:
    """Shop as `user` (an anonymous-looking id of this test's own), starting on the home page."""
    page.goto("/")
    ready(page, "home")
    page.evaluate(f"localStorage.setItem('aisle.shopper', JSON.stringify({{id: {json.dumps(user)}, known: false}}))")
    page.reload()
    ready(page, "home")


def test_recently_viewed_row_follows_the_products_viewed(page: Any) -> None:
    _as(page, "anon-e2e-viewer")
    assert ids(page, "recently-viewed") == []
    seen: list[str] = []
    for n in (0, 1):
        # a trending card not viewed yet: the view just posted may reorder the row (other items trend too)
        shown = ids(page, "trending")
        assert len(shown) == len(set(shown)), shown
        fresh = next(i for i, item in enumerate(shown) if item not in seen)
        card = page.locator("#trending li.card").nth(fresh)
        seen.append(card.get_attribute("data-item-id"))
        card.locator("a").click()
        ready(page, "product")
        page.click(".logo")
        ready(page, "home")
        assert ids(page, "recently-viewed")[: n + 1] == seen[::-1]  # newest first
    shot(page, "recently-viewed")


def test_buy_again_row_shows_a_due_consumable_not_a_durable_just_bought(page: Any, site: Site) -> None:
    items = pl.read_parquet(site.workdir / "synthetic" / "items.parquet").filter(pl.col("available"))
    leaf = pl.col("categories").list.last()
    coffee = items.filter(leaf == "Coffee beans")["item_id"][0]
    tent = items.filter(leaf == "Tents")["item_id"][0]
    user = "anon-e2e-regular"
    now = datetime.now(UTC)
    events = [{"user_id": user, "item_id": coffee, "event_type": "purchase",
               "timestamp": (now - timedelta(days=d)).isoformat()} for d in (44, 30, 16)]
    events.append({"user_id": user, "item_id": tent, "event_type": "purchase",
                   "timestamp": (now - timedelta(hours=20)).isoformat()})
    assert httpx.post(f"{site.url}/events", json={"events": events}).json()["accepted"] == 4
    _as(page, user)
    assert ids(page, "buy-again") == [coffee]
    why = texts(page, "#buy-again .why")[0]
    assert "every 2 weeks" in why and "ago" in why, why
    shot(page, "buy-again")


def _prices(page: Any) -> list[float]:
    return [float(p.replace("$", "").replace(",", "")) for p in texts(page, "#results .price")]


def test_a_two_turn_refinement_in_the_search_box_with_undo(page: Any, site: Site) -> None:
    items = pl.read_parquet(site.workdir / "synthetic" / "items.parquet")
    leaves = items.group_by(pl.col("categories").list.last().alias("leaf")).len().sort(["len", "leaf"],
                                                                                       descending=[True, False])
    query = leaves["leaf"][0].lower()
    page.goto("/")
    ready(page, "home")
    page.fill("#q", query)
    page.press("#q", "Enter")
    ready(page, "search")
    first = ids(page, "results")
    before = _prices(page)
    assert first and len(before) >= 3
    whys = texts(page, "#results .why")
    assert len(whys) == len(first) and all(whys), "every search hit shows why it is there"
    assert any("Matches" in w for w in whys), whys
    page.fill("#q", "cheaper")
    page.press("#q", "Enter")
    page.wait_for_selector('#refinement[data-kind="refine"]')
    ready(page, "search")
    said = page.inner_text("#understood")
    cap = float(re.search(r"under \$([\d.,]+)", said).group(1).replace(",", ""))
    assert said.lower().startswith(f"showing {query}") and cap < max(before)
    assert ids(page, "results") and all(p <= cap for p in _prices(page))
    shot(page, "refined-cheaper")
    brand = texts(page, "#results .card-brand")[0]
    page.fill("#q", f"without {brand}")
    page.press("#q", "Enter")
    page.wait_for_function(f"() => document.getElementById('understood')?.textContent.includes('not {brand}')")
    ready(page, "search")
    assert brand not in texts(page, "#results .card-brand")
    page.click("#refine-undo")
    page.wait_for_function(f"() => !document.getElementById('understood')?.textContent.includes('not {brand}')")
    ready(page, "search")
    assert f"under ${cap:g}" in page.inner_text("#understood").replace(",", "")
    page.reload()  # a reload shows the same step, it does not apply "cheaper" again
    ready(page, "search")
    assert f"under ${cap:g}" in page.inner_text("#understood").replace(",", "")
    page.click("#refine-undo")
    page.wait_for_function("() => !document.getElementById('understood')?.textContent.includes('under')")
    ready(page, "search")
    assert ids(page, "results") == first
    shot(page, "refined-undone")
