"""The world a simulation runs in: a synthetic store, its hidden tastes, and the real API serving a bundle of it.

What is simulated is what is served: the bundle is built by `aisle.bundle.build_serving_bundle` from the store's
events, the lists come from the FastAPI app (`aisle.serve.create_app`, driven in process through Starlette's
TestClient: routes, live session state, rules and cold start included), the shoppers' events go back through
`POST /events`, and items that launch during the run arrive through `PUT /items`. The newest items of the
store are held out of the bundle for that: they are the new arrivals.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aisle.data.synthetic import SyntheticConfig, Tastes, generate, latent_tastes


@dataclass(frozen=True)
class WorldConfig:
    """A small store by default: a bundle builds in seconds and a round takes a few milliseconds."""

    n_items: int = 300
    n_users: int = 200
    n_events: int = 8_000
    seed: int = 0
    new_items: int = 20  # the newest items, held out of the bundle; they arrive during the run
    pipeline_rounds: int = 10  # the combiner's boosting rounds (small store, small model)

    def store_config(self) -> SyntheticConfig:
        return SyntheticConfig(n_items=self.n_items, n_users=self.n_users, n_events=self.n_events, seed=self.seed)


@dataclass
class World:
    """The store, its tastes, the served API, and which items exist now."""

    config: WorldConfig
    tastes: Tastes
    items: pl.DataFrame  # the whole catalog, held-out items included
    client: Any  # starlette TestClient over the app (None before the first `reset`)
    arrivals: tuple[str, ...]  # the held-out items, in launch order
    available: list[str] = field(default_factory=list)
    dataset: Any = None  # the store's events and catalog the bundle was built from (the shoppers' past)
    _workdir: Path | None = None
    _owned: bool = False

    def __post_init__(self) -> None:
        self.item_row = {i: n for n, i in enumerate(self.tastes.item_ids)}
        self.user_row = {u: n for n, u in enumerate(self.tastes.user_ids)}
        self._initial = list(self.available)
        self.price = dict(zip(self.items["item_id"].to_list(), self.items["price"].to_list(), strict=True))

    def utility(self, user_rows: np.ndarray, item_ids: list[list[str]]) -> np.ndarray:
        """(len(user_rows), k) true utility of each shown item for its shopper."""
        items = np.array([[self.item_row[i] for i in row] for row in item_ids], dtype=np.int64)
        return self.tastes.affinity(np.asarray(user_rows)[:, None], items)

    @property
    def bundle_path(self) -> Path:
        """The folder of the bundle the app serves."""
        assert self._workdir is not None
        return self._workdir / "bundle"

    def serving(self, bundle_path: Path) -> World:
        """The same store, shoppers and arrivals served from another bundle (saved at `bundle_path`, whose parent
        folder the caller owns): a second arm to compare with this one."""
        if bundle_path.name != "bundle":
            raise ValueError("a world serves its folder's `bundle`; save the bundle as FOLDER/bundle")
        return World(self.config, self.tastes, self.items, None, self.arrivals, available=list(self._initial),
                     dataset=self.dataset, _workdir=bundle_path.parent, _owned=False)

    def reset(self, explore: Any = None, rules: Any = None) -> None:
        """A fresh app over the same bundle: the live state and the launched items of an earlier run are gone.
        `explore` and `rules`: the app's `[explore]` and `[rules]` settings (`aisle.config.ExploreConfig`,
        `RulesConfig`; default: exploration off, the default rules)."""
        from fastapi.testclient import TestClient

        from aisle.config import Settings
        from aisle.serve import create_app

        if self.client is not None:
            self.client.__exit__(None, None, None)
        assert self._workdir is not None
        extra = {k: v for k, v in (("explore", explore), ("rules", rules)) if v is not None}
        settings = Settings(bundle=self._workdir / "bundle", **extra)
        self.client = TestClient(create_app(settings))
        self.client.__enter__()
        self.available = list(self._initial)

    def launch(self, item_ids: list[str]) -> None:
        """New items go on sale: `PUT /items`, as a store's catalog feed would do it."""
        rows = self.items.filter(pl.col("item_id").is_in(item_ids))
        body = [{"item_id": r["item_id"], "title": r["title"], "description": r["description"] or "",
                 "brand": r["brand"], "categories": r["categories"] or [], "price": r["price"],
                 "attributes": json.loads(r["attributes"] or "{}")} for r in rows.iter_rows(named=True)]
        _ok(self.client.put("/items", json={"items": body}), "PUT /items")
        self.available.extend(item_ids)

    @property
    def services(self) -> Any:
        """The served app's `aisle.serve.services.Services` (what a simulated worker refresh hands its state to)."""
        return self.client.app.state.services

    def post_events(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 500):
            _ok(self.client.post("/events", json={"events": events[start:start + 500]}), "POST /events")

    def close(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None
        if self._owned and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_world(config: WorldConfig | None = None, *, pipeline: Any = None, workdir: Path | None = None,
                progress: Callable[[str], None] | None = None) -> World:
    """Generate the store, hold out its newest items, build and serve a bundle of the rest.

    `pipeline` is an `aisle.pipeline.PipelineConfig` (default: item-to-item neighbours, trending and popularity,
    a small combiner); `workdir` keeps the bundle (default: a temporary folder removed on `close`)."""
    from aisle.bundle import build_serving_bundle, fingerprint
    from aisle.data.readers.base import Dataset
    from aisle.pipeline import PipelineConfig, SourceSpec

    cfg = config or WorldConfig()
    say = progress or (lambda _m: None)
    say("synthetic store")
    store = generate(cfg.store_config())
    tastes = latent_tastes(cfg.store_config())
    on_sale = store.items.filter(pl.col("available"))
    newest = on_sale.sort(["created_at", "item_id"], descending=[True, False])["item_id"].head(cfg.new_items)
    arrivals = tuple(reversed(newest.to_list()))
    old_items = store.items.filter(~pl.col("item_id").is_in(newest.implode()))
    old_events = store.events.filter(~pl.col("item_id").is_in(newest.implode()) | pl.col("item_id").is_null())
    data = Dataset(name="sim", items=old_items, users=store.users, events=old_events)
    pcfg = pipeline or PipelineConfig(sources=(SourceSpec("itemknn", "itemknn", "i2i", decay=0.7),
                                               SourceSpec("trending", "trending", "trending")),
                                      rounds=cfg.pipeline_rounds)
    say("serving bundle")
    bundle = build_serving_bundle(data, pcfg, seed=cfg.seed, search=False, dense=False)
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="aisle-sim-")) if workdir is None else Path(workdir)
    bundle.save(root / "bundle", data_fingerprint=fingerprint(old_events), metrics=bundle.manifest["metrics"])
    available = old_items.filter(pl.col("available"))["item_id"].to_list()
    return World(cfg, tastes, store.items, None, arrivals, available=available, dataset=data, _workdir=root,
                 _owned=owned)


def _ok(response: Any, what: str) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{what} answered {response.status_code}: {response.text[:500]}")
    return response.json()
