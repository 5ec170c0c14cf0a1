"""The dashboard in chromium: offline evaluation charts from the bundle's report, live metrics, catalog/events."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.conftest import Site, shot


def test_dashboard_charts_render_with_data(page: Any, site: Site) -> None:
    report = json.loads((site.workdir / "bundle" / "report.json").read_text())
    models = list(report["models"])
    page.goto("/dashboard")
    page.wait_for_selector("#dash[data-ready][data-overview]")
    # offline evaluation: one chart per metric at the chosen cut-off, a bar per model, the values of the report
    chart = page.locator("#chart-NDCG_10")
    assert chart.locator("rect.bar").count() == len(models)
    label = chart.locator("svg").get_attribute("aria-label")
    best = max(models, key=lambda m: report["models"][m]["NDCG@10"])
    assert f"{best} {round(report['models'][best]['NDCG@10'], 3):g}" in label, label
    widths = chart.locator("rect.bar").evaluate_all("els => els.map(e => Number(e.getAttribute('width')))")
    assert max(widths) > 100 and len(set(widths)) > 1
    assert page.locator("#eval-charts figure").count() >= 5
    page.select_option("#cutoff", "20")
    page.wait_for_selector("#chart-NDCG_20 rect.bar")
    # the bundle in use
    version = httpx.get(f"{site.url}/api/stats").json()["bundle"]["version"]
    assert version in page.inner_text("#bundle-info")
    # catalog and events: events by type from the store, in the chart
    assert "view" in page.locator("#chart-event-types svg").get_attribute("aria-label")
    assert page.locator("#chart-categories rect.bar").count() >= 5
    # live: traffic made now shows up within a few polls
    for q in ("headphones", "blender", "coffee", "tent", "yoga mat"):
        httpx.get(f"{site.url}/search", params={"q": q})
        httpx.get(f"{site.url}/trending")
    page.wait_for_function("() => parseFloat(document.querySelector('#tile-rps dd').textContent) > 0", timeout=10_000)
    assert page.inner_text("#tile-p95 dd").endswith("ms")
    page.wait_for_selector("#chart-rps path.line")
    shot(page, "dashboard")
