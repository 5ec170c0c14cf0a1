"""The built-in synthetic store: a seeded catalog, shoppers and sessions with signal worth learning.

Real logs are private or frozen in time; the demo and most tests need a store that anyone can rebuild
byte for byte (`generate(SyntheticConfig(seed=...))`) and that behaves enough like a shop that search
and recommendation models have something to find. The generative story, and the signal each part plants:

1. **Catalog** (`vocab`, `catalog`). A category tree of 5 top levels and 42 leaves, 2 or 3 levels deep
   (Outdoors > Camping > Tents, Beauty > Fragrance). Each leaf has its own price median and log-normal
   spread; fictional brands cover a few subtrees (some span categories, some are specialists) and carry a
   price tier that shifts the leaf's prices. Items come in product lines ("Northpeak Summit Pro") of 1-4
   variants that differ in one attribute (color, capacity, size), so titles are distinct but related.
   Titles, descriptions and the `attributes` JSON are composed from per-leaf attribute vocabularies, with
   units ("64GB", "1200 W", "2-person"): lexical signal for search. Popularity is Zipf within each leaf
   (brand pull, latent quality and luck set the rank): the long tail. ~12% of items launch during the
   span (cold start, with a launch boost) and a few sell out near its end (`available` false).
2. **Shoppers** (`users`). Each has 2-4 preferred leaves inside one or two top levels, two favourite
   brands, a price tier (premium shoppers lean to premium brands), a gender for apparel, a search habit,
   an activity level (heavy tail) and a join date (~20% join during the span: cold-start users). The
   users table shows only a coarse part of it (segment, region, age band, device, sometimes interests).
3. **Sessions** (`behaviour`). Sessions start at realistic hours, more at weekends and growing over the
   span. A session starts from the shopper's taste times the season of its leaf on that day (outdoors
   and sunscreen peak in summer, sports after New Year, electronics in late autumn): drift. Each next view
   mostly stays in the leaf at a similar price, often on a variant or price neighbour of the current item,
   sometimes moves to a sibling or a complementary leaf, sometimes starts over: sequential signal. Among a
   few candidates drawn by popularity the shopper keeps the one that fits brand, price and gender best:
   personal signal on top of popularity.
4. **Search.** Some sessions (and some mid-session turns) start with a query phrased for an item the
   shopper has in mind ("waterproof hiking boots", "lumora camera under $500", "memory card 64gb",
   "northpeak summit pro"), ~10% with a typo. The views that follow satisfy the query's filter (leaf,
   attribute, brand, price cap, product line) and are often preceded by a click on the result tile:
   query -> item relevance signal.
5. **Funnel.** A view becomes an add-to-cart with a probability driven by taste, brand, price and item
   quality (~10% of views); some cart lines are removed; sessions check out or abandon (~40% of carts are
   bought). Ratings follow some purchases days later, higher when the item fits the shopper. Every
   purchase is preceded by a view and a cart of the same item in the same session.
6. **Across sessions.** A purchase often schedules a later session in a complementary leaf (camera ->
   memory card, tent -> sleeping bag, phone -> case, coffee maker -> coffee beans) and an abandoned cart
   often brings the shopper back to buy: repeat and complement signal for next-basket models.

Events are generated per time window and per session step with numpy (no Python object per event): the
default store takes a few seconds, 1M events about 10 s and 10M about a minute and a half (2.5 GB peak)
on a 2-core machine. The log is trimmed to exactly `n_events` by dropping whole random sessions that
have no cart (nothing depends on them) and then the last few events in time. Event `value` is the
quantity for carts, removals and purchases, the 1-5 stars for ratings, null otherwise. Sessions of one
shopper are drawn independently, so a handful (~0.1%) overlap in time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aisle.data.synthetic.behaviour import CART, TYPE_NAMES, Knobs, Simulator
from aisle.data.synthetic.catalog import DAY, build_catalog, season_matrix
from aisle.data.synthetic.users import build_users
from aisle.data.synthetic.vocab import LEAVES
from aisle.types import EVENT_SCHEMA, conform

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    """Sizes and span of a synthetic store. The span ends at a fixed date, never now(): determinism."""

    n_items: int = 5_000
    n_users: int = 2_000
    n_events: int = 200_000
    seed: int = 0
    days: int = 180
    end: datetime = datetime(2026, 6, 30, tzinfo=UTC)
    new_item_fraction: float = 0.12
    unavailable_fraction: float = 0.04
    typo_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.n_items < len(LEAVES):
            raise ValueError(f"n_items must be at least {len(LEAVES)} (one per leaf category), not {self.n_items}")
        if self.n_users < 1 or self.n_events < 1 or self.days < 1:
            raise ValueError("n_users, n_events and days must be positive")
        if self.end.tzinfo is None:
            raise ValueError("end must be timezone-aware (UTC)")

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["end"] = self.end.isoformat()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticConfig:
        """The inverse of `as_dict` (e.g. the `config` of a generated folder's manifest.json, to regenerate it);
        an unknown key is an error that names it and lists the fields."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown synthetic config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"accepted: {', '.join(cls.__dataclass_fields__)}")
        values = dict(data)
        if isinstance(values.get("end"), str):
            values["end"] = datetime.fromisoformat(values["end"])
        return cls(**values)


@dataclass(frozen=True)
class SyntheticStore:
    """The generated tables in the canonical schemas of `aisle.types`."""

    config: SyntheticConfig
    items: pl.DataFrame
    users: pl.DataFrame
    events: pl.DataFrame
    stats: dict[str, object] = field(default_factory=dict)

    def write(self, out_dir: Path) -> Path:
        """Write the `aisle` folder format (items/users/events.parquet) plus manifest.json and README.md."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.items.write_parquet(out / "items.parquet")
        self.users.write_parquet(out / "users.parquet")
        self.events.write_parquet(out / "events.parquet")
        manifest = {"generator": "aisle.data.synthetic", "format": "aisle", "config": self.config.as_dict(),
                    "start": self.config.start.isoformat(), "rows": {"items": self.items.height,
                    "users": self.users.height, "events": self.events.height}, "stats": self.stats}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        c = self.config
        (out / "README.md").write_text(
            f"# Aisle synthetic store (seed {c.seed})\n\n"
            f"{self.items.height:,} items, {self.users.height:,} users and {self.events.height:,} events from "
            f"{c.start:%Y-%m-%d} to {c.end:%Y-%m-%d}, generated by `aisle.data.synthetic` "
            f"({json.dumps(c.as_dict())}).\n\nThe same config always gives the same tables. Load with "
            f"`aisle ingest aisle:{out}` or `read_dataspec(\"aisle:{out}\")`; `manifest.json` has the config and "
            "counts. The generative story is in the docstring of `aisle/data/synthetic/__init__.py`.\n",
            encoding="utf-8")
        return out


def generate(config: SyntheticConfig | None = None, *, progress: Progress | None = None) -> SyntheticStore:
    """Build the store for `config` (defaults: 5,000 items, 2,000 users, 200,000 events over 180 days).

    `progress(done, total)` is called as events are generated (total = config.n_events).
    """
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    cat = build_catalog(cfg.n_items, rng, start=cfg.start, days=cfg.days, new_fraction=cfg.new_item_fraction,
                        unavailable_fraction=cfg.unavailable_fraction)
    users = build_users(cfg.n_users, rng, start=cfg.start, days=cfg.days)
    sim = Simulator(cat, users, rng, days=cfg.days, season=season_matrix(cfg.start, cfg.days),
                    knobs=Knobs(typo=cfg.typo_rate))
    events = _assemble(sim.run(cfg.n_events, progress), sim.log.queries, cat.item_ids, users.user_ids, cfg, rng)
    counts = events.group_by("event_type").len().sort("event_type")
    stats = {"event_types": dict(zip(counts["event_type"].to_list(), counts["len"].to_list(), strict=True)),
             "leaf_categories": len(LEAVES)}
    return SyntheticStore(cfg, cat.frame, users.frame, events, stats)


@dataclass(frozen=True)
class Tastes:
    """The hidden truth behind a synthetic store: how much each shopper wants each item.

    The shopper simulator (`aisle.simulate`) needs the preferences the store's events were drawn from, so that
    its shoppers react to a list the way the store's shoppers would and an oracle can rank by them. They are
    rebuilt from the config's seed (the catalog and the shoppers are drawn before any event, so no event is
    generated and `generate`'s output is untouched) and asked through `affinity`, never through fields.
    """

    item_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    _sim: Simulator = field(repr=False)

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """How much each shopper wants each item (the log-odds behind the generator's add-to-cart, without its
        bias): taste for the item's leaf, brand affinity, price tier fit, gender fit and quality. `users` and
        `items` are row numbers into `user_ids` and `item_ids`, broadcast against each other."""
        return self._sim.cart_logit(np.asarray(users), np.asarray(items))

    @property
    def activity(self) -> np.ndarray:
        """Each shopper's relative session rate (who visits how often)."""
        return self._sim.users.activity.copy()


def latent_tastes(config: SyntheticConfig | None = None) -> Tastes:
    """The tastes behind `generate(config)`: the same shoppers and items, by the same ids."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    cat = build_catalog(cfg.n_items, rng, start=cfg.start, days=cfg.days, new_fraction=cfg.new_item_fraction,
                        unavailable_fraction=cfg.unavailable_fraction)
    users = build_users(cfg.n_users, rng, start=cfg.start, days=cfg.days)
    sim = Simulator(cat, users, rng, days=cfg.days, season=season_matrix(cfg.start, cfg.days),
                    knobs=Knobs(typo=cfg.typo_rate))
    return Tastes(tuple(cat.item_ids.tolist()), tuple(users.user_ids.tolist()), sim)


def _assemble(raw: dict[str, np.ndarray], queries: list[str], item_ids: np.ndarray, user_ids: np.ndarray,
              cfg: SyntheticConfig, rng: np.random.Generator) -> pl.DataFrame:
    """Keep the span, trim to exactly n_events, order by time and turn indices into ids."""
    keep = raw["t"] < cfg.days * DAY
    raw = {k: v[keep] for k, v in raw.items()}
    excess = len(raw["t"]) - cfg.n_events
    if excess > 0:  # drop whole random sessions without a cart: no purchase, rating or follow-up needs them
        uniq, inv, sizes = np.unique(raw["sess"], return_inverse=True, return_counts=True)
        carted = np.isin(uniq, raw["sess"][raw["etype"] == CART])
        cand = rng.permutation(np.flatnonzero(~carted))
        k = int(np.searchsorted(np.cumsum(sizes[cand]), excess, side="right"))
        dropped = np.zeros(len(uniq), dtype=bool)
        dropped[cand[:k]] = True
        raw = {key: v[~dropped[inv]] for key, v in raw.items()}
    order = np.lexsort((np.arange(len(raw["t"])), raw["t"]))[: cfg.n_events]  # then the last few in time
    raw = {k: v[order] for k, v in raw.items()}
    n = len(order)
    _, first, inv = np.unique(raw["sess"], return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))  # sessions numbered by first event
    start_us = int(cfg.start.timestamp()) * 1_000_000
    ts = start_us + np.round(raw["t"] * 1000).astype(np.int64) * 1000  # millisecond clock, as logs have
    ew, sw = max(9, len(str(n))), max(8, len(str(len(first))))
    df = pl.DataFrame({
        "_n": np.arange(n), "_s": rank[inv], "_u": raw["user"], "_i": raw["item"], "_e": raw["etype"],
        "_q": raw["qref"], "timestamp": ts, "value": raw["value"],
    })
    items = pl.Series(item_ids.tolist(), dtype=pl.String)
    qs = pl.Series(queries if queries else [""], dtype=pl.String)
    df = df.with_columns(
        pl.concat_str([pl.lit("e"), pl.col("_n").cast(pl.String).str.zfill(ew)]).alias("event_id"),
        pl.Series(user_ids.tolist(), dtype=pl.String).gather(raw["user"]).alias("user_id"),
        pl.when(pl.col("_i") >= 0).then(items.gather(np.maximum(raw["item"], 0))).alias("item_id"),
        pl.Series(TYPE_NAMES, dtype=pl.String).gather(raw["etype"].astype(np.int64)).alias("event_type"),
        pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.concat_str([pl.lit("s"), pl.col("_s").cast(pl.String).str.zfill(sw)]).alias("session_id"),
        pl.col("value").fill_nan(None),
        pl.when(pl.col("_q") >= 0).then(qs.gather(np.maximum(raw["qref"], 0))).alias("query"),
    )
    return conform(df, EVENT_SCHEMA)


__all__ = ["SyntheticConfig", "SyntheticStore", "Tastes", "generate", "latent_tastes"]
