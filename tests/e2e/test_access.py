"""Keyboard use and a phone-width viewport."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Site, shot
from tests.e2e.helpers import no_horizontal_scroll, ready


def test_keyboard_only_search_and_product(page: Any) -> None:
    page.goto("/")
    ready(page, "home")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")  # the logo
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "q"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "focus is visible"
    page.keyboard.type("hea", delay=40)
    page.wait_for_selector("#suggestions:not([hidden]) li")
    assert page.get_attribute("#q", "aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    active = page.get_attribute("#q", "aria-activedescendant")
    assert active and page.get_attribute(f"#{active}", "aria-selected") == "true"
    page.keyboard.press("Escape")
    assert page.get_attribute("#q", "aria-expanded") == "false"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # picks the highlighted suggestion
    page.wait_for_function("() => ['search', 'product'].includes(document.querySelector('main').dataset.ready)"
                           " && !location.hash.startsWith('#/?') && location.hash !== ''")
    # From the page heading (focused after navigation), Tab reaches a product card; Enter opens it.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('card-link')"):
            break
    else:
        raise AssertionError("no product card reachable with Tab")
    item = page.evaluate("document.activeElement.dataset.itemId")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => location.hash === '#/item/{item}'")
    ready(page, "product")
    assert page.evaluate("document.activeElement.tagName") == "H1"  # focus moved to the new page
    shot(page, "keyboard-product")


def test_phone_width_storefront_and_dashboard(browser: Any, site: Site) -> None:
    ctx = browser.new_context(viewport={"width": 375, "height": 800}, base_url=site.url, is_mobile=True,
                              has_touch=True)
    pg = ctx.new_page()
    try:
        pg.goto("/")
        ready(pg, "home")
        assert no_horizontal_scroll(pg)
        assert pg.locator("#q").is_visible() and pg.locator("#user").is_visible()
        shot(pg, "phone-home")
        pg.fill("#q", "headphones")
        pg.click("#search-form button[type=submit]")
        ready(pg, "search")
        assert no_horizontal_scroll(pg)
        assert pg.locator(".facets details").get_attribute("open") is None  # filters fold away on a phone
        pg.click(".facets summary")
        assert pg.locator('.facets input[name="brand"]').first.is_visible()
        shot(pg, "phone-search")
        pg.locator("#results li.card a").first.click()
        ready(pg, "product")
        assert no_horizontal_scroll(pg)
        assert pg.locator("#add-to-cart").is_visible()
        shot(pg, "phone-product")
        pg.goto("/dashboard")
        pg.wait_for_selector("#dash[data-ready]")
        assert no_horizontal_scroll(pg)
        shot(pg, "phone-dashboard")
    finally:
        ctx.close()
