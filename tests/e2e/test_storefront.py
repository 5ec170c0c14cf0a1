"""The storefront in chromium: search with a typo, facets and sort, click -> recommendations change, product page
rows, cart and purchase, the user switcher."""

from __future__ import annotations

import re
from typing import Any

import httpx
import polars as pl

from tests.e2e.conftest import Site, shot
from tests.e2e.helpers import ids, ready, texts


def _typo(site: Site) -> tuple[str, str]:
    """The stem (no plural s) of a one-word leaf category of the test store, and the word with one letter dropped."""
    items = pl.read_parquet(site.workdir / "synthetic" / "items.parquet")
    leaves = items.select(pl.col("categories").list.last().alias("leaf")).group_by("leaf").len()
    word = next(w.lower() for w in leaves.sort(["len", "leaf"], descending=[True, False])["leaf"]
                if " " not in w and len(w) >= 7)
    return word.removesuffix("s"), word[:3] + word[4:]


def test_search_with_a_typo_suggests_corrects_filters_and_sorts(page: Any, site: Site) -> None:
    stem, typo = _typo(site)
    page.goto("/")
    ready(page, "home")
    page.fill("#q", "")
    page.type("#q", typo, delay=30)
    page.wait_for_selector("#suggestions:not([hidden]) li")
    options = texts(page, "#suggestions li")
    assert any(stem in o.lower() for o in options), options  # the correction (or a completion of it) is offered
    shot(page, "search-suggestions")
    page.press("#q", "Enter")
    ready(page, "search")
    assert page.locator("#did-you-mean").is_visible()
    assert stem in page.inner_text("#did-you-mean").lower()
    titles = texts(page, "#results .card-title")
    assert titles and sum(stem in t.lower() for t in titles) >= len(titles) // 2, titles
    total = int(re.match(r"[\d,]+", page.inner_text("#result-count")).group().replace(",", ""))
    shot(page, "search-typo")
    brand_box = page.locator('input[name="brand"]').first
    brand = brand_box.get_attribute("value")
    brand_box.check()
    page.wait_for_function("() => location.hash.includes('brand=')")
    ready(page, "search")
    brands = texts(page, "#results .card-brand")
    assert brands and set(brands) == {brand}
    assert int(re.match(r"[\d,]+", page.inner_text("#result-count")).group().replace(",", "")) <= total
    page.select_option("#sort", "price_asc")
    page.wait_for_function("() => location.hash.includes('sort=price_asc')")
    ready(page, "search")
    prices = [float(p.replace("$", "").replace(",", "")) for p in texts(page, "#results .price")]
    assert prices == sorted(prices) and len(prices) >= 1


def test_clicking_a_product_changes_the_recommendations_on_the_next_page(page: Any, site: Site) -> None:
    page.goto("/")
    ready(page, "home")
    before = ids(page, "recommended")
    assert len(before) >= 6
    assert all(texts(page, "#recommended .why")), "every recommendation shows why"
    cards = page.locator("#trending li.card")
    target = cards.nth(cards.count() - 1)
    target_id = target.get_attribute("data-item-id")
    title = target.locator(".card-title").inner_text()
    target.locator("a").click()
    ready(page, "product")
    assert page.inner_text("h1") == title
    page.click(".logo")
    ready(page, "home")
    after = ids(page, "recommended")
    assert after != before and target_id not in after
    assert page.locator("#recommended .badge").count() >= 1  # "New for you" on what changed
    assert "from this visit" in page.inner_text("#recommended .row-note")
    whys = texts(page, "#recommended .why")
    assert any(title in w for w in whys), whys  # explained by the product just viewed
    shot(page, "home-after-click")


def _popular_purchase(site: Site) -> str:
    ev = pl.read_parquet(site.workdir / "synthetic" / "events.parquet")
    top = ev.filter(pl.col("event_type") == "purchase").group_by("item_id").len()
    return str(top.sort(["len", "item_id"], descending=[True, False])["item_id"][0])


def _accepted_events(site: Site) -> float:
    """Events the server accepted since it started (the Prometheus counter, summed over its workers). Not the
    dashboard's events per minute: a sliding-window rate can stay level while events are added, as older ones
    leave the window."""
    text = httpx.get(f"{site.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('aisle_events_ingested_total{outcome="accepted"'))


def test_product_page_rows_cart_and_purchase(page: Any, site: Site) -> None:
    item = _popular_purchase(site)
    page.goto(f"/#/item/{item}")
    ready(page, "product")
    assert page.locator("#similar li.card").count() >= 3
    assert page.locator("#bought-together li.card").count() >= 1
    assert item not in ids(page, "similar") + ids(page, "bought-together")
    assert all(texts(page, "#similar .why")) and all(texts(page, "#bought-together .why"))
    assert page.locator("#for-you li.card").count() >= 1
    shot(page, "product")
    page.click("#add-to-cart")
    page.wait_for_function("() => document.getElementById('cart-count').textContent === '1'")
    page.click("#cart-link")
    ready(page, "cart")
    assert page.locator(".cart-list li").count() == 1
    before = _accepted_events(site)
    page.click("#checkout")
    page.wait_for_selector("text=Thank you for your order")
    assert page.inner_text("#cart-count") == "0"
    assert page.locator("#recommended li.card").count() >= 1
    assert _accepted_events(site) > before
    shot(page, "after-purchase")


def test_user_switcher_shows_a_known_shoppers_recommendations(page: Any) -> None:
    page.goto("/")
    ready(page, "home")
    options = page.eval_on_selector_all("#user option", "els => els.map(e => e.value)")
    known = [o for o in options if o.startswith("u:")]
    assert len(known) >= 5
    anon = ids(page, "recommended")
    page.select_option("#user", known[0])
    page.wait_for_function(f"() => document.querySelector('main h1')?.textContent.includes('{known[0][2:]}')")
    ready(page, "home")
    assert "events of yours" in page.inner_text("#recommended .row-note")
    assert ids(page, "recommended") != anon
    shot(page, "known-user")
    page.select_option("#user", "anon")
    page.wait_for_function("() => document.querySelector('main h1')?.textContent.includes('Welcome to')")
