"""Small waits and reads the browser tests share (the pages mark themselves `data-ready` when rendered)."""

from __future__ import annotations

from typing import Any


def ready(pg: Any, page: str, timeout: float = 20_000) -> None:
    """Wait until the storefront's router has rendered `page` (home, search, product, cart) for the address now in
    the location bar. `data-ready` alone is not enough after a click that changes the address: the old page is
    still marked ready until the hashchange event starts the new render, and a test read the old results."""
    pg.wait_for_function("(p) => { const m = document.querySelector('main');"
                         " return m.dataset.ready === p && m.dataset.route === location.hash; }",
                         arg=page, timeout=timeout)


def ids(pg: Any, section: str) -> list[str]:
    return pg.eval_on_selector_all(f"#{section} li.card", "els => els.map(e => e.dataset.itemId)")


def texts(pg: Any, selector: str) -> list[str]:
    return pg.eval_on_selector_all(selector, "els => els.map(e => e.textContent.trim())")


def no_horizontal_scroll(pg: Any) -> bool:
    return pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
