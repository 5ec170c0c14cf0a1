"""The closed loop: shoppers arrive, the policy fills their list through the API, they react, their events go
back to the API, new items launch; every list becomes impression rows and every reaction an event row that names
the list it came from (`request_id`), the same logs the API writes.

Each round is one shopper session with one list of `k` items; shoppers come by their activity (heavy users more
often). The metrics: click rate per shown item, conversion and revenue per session, cumulative regret (expected
clicks the oracle's list would have had minus those of the list shown, both exact under the shopper model), and
new-item coverage (the share of launched items that were shown at least once after launch).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aisle.simulate.policies import OraclePolicy, Policy, Request
from aisle.simulate.shoppers import ShopperModel
from aisle.simulate.world import World
from aisle.types import EVENT_SCHEMA, IMPRESSION_SCHEMA, conform

#: Events with the list they answer. The online half adds `request_id` to EVENT_SCHEMA itself; until then the
#: simulator's logs carry it as the last column, so both read the same.
EVENT_LOG_SCHEMA: dict[str, pl.DataType] = ({**EVENT_SCHEMA} if "request_id" in EVENT_SCHEMA
                                            else {**EVENT_SCHEMA, "request_id": pl.String()})


@dataclass(frozen=True)
class Arm:
    """One arm of a simulated experiment: the policy it serves and an effect planted in the world for its shoppers
    (`conversion_lift`: their sessions buy something 1 + lift times as often: a known truth to test the report on)."""

    policy: Policy
    conversion_lift: float = 0.0


@dataclass
class SimulationResult:
    impressions: pl.DataFrame  # IMPRESSION_SCHEMA
    events: pl.DataFrame  # EVENT_LOG_SCHEMA
    metrics: dict[str, dict[str, float]]  # per arm (the policy's name when there is one arm)
    prices: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"item_id": pl.String,
                                                                              "price": pl.Float64}))

    def write(self, out: Path) -> Path:
        """impressions.parquet, events.parquet, items.parquet (item_id, price: for revenue) and metrics.json."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.impressions.write_parquet(out / "impressions.parquet")
        self.events.write_parquet(out / "events.parquet")
        self.prices.write_parquet(out / "items.parquet")
        (out / "metrics.json").write_text(json.dumps(self.metrics, indent=2, sort_keys=True) + "\n")
        return out


def assign(user_id: str, arms: list[str], salt: str) -> str:
    """Sticky arm of a shopper: a salted hash of their id, so a shopper sees one arm for the whole run."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{user_id}".encode()).digest()[:8], "big")
    return arms[h % len(arms)]


def simulate(world: World, arms: Policy | Mapping[str, Arm], rounds: int, *, k: int = 10, seed: int = 0,
             batch: int = 1, shoppers: ShopperModel | None = None, launches: int = 4, salt: str = "sim",
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Run `rounds` sessions against one policy, or an experiment when `arms` maps arm names to `Arm`s.

    `batch` rounds are asked before their events are sent back (1: every list sees every earlier reaction).
    The held-out items launch in `launches` waves spread over the run."""
    if rounds < 1 or k < 1 or batch < 1:
        raise ValueError("rounds, k and batch must be positive")
    experiment = isinstance(arms, Mapping)
    plan: dict[str, Arm] = dict(arms) if experiment else {arms.name: Arm(arms)}  # type: ignore[union-attr, arg-type]
    names = sorted(plan)
    # every run starts from the bundle: no live events or launches of an earlier run; an exploring policy's app
    # explores ([explore] settings)
    only = plan[names[0]].policy
    world.reset(*((getattr(only, "explore", None), getattr(only, "rules", None)) if not experiment else ()))
    model = shoppers or ShopperModel()
    rng = np.random.default_rng(seed)
    oracle = OraclePolicy(world)
    activity = world.tastes.activity
    users = rng.choice(len(activity), size=rounds, p=activity / activity.sum())
    waves = np.array_split(np.array(world.arrivals, dtype=object), launches) if world.arrivals else []
    wave_at = {int(rounds * (i + 1) / (launches + 1)): [str(x) for x in w] for i, w in enumerate(waves) if len(w)}
    launched: dict[str, int] = {}
    start = world.config.store_config().end + timedelta(minutes=1)
    imp_rows: list[dict[str, Any]] = []
    ev_rows: list[dict[str, Any]] = []
    stats = {a: {"sessions": 0, "impressions": 0, "clicks": 0, "carts": 0, "purchases": 0, "converted": 0,
                 "revenue": 0.0, "regret": 0.0, "expected_clicks": 0.0, "new_impressions": 0} for a in names}
    shown_new: dict[str, set[str]] = {a: set() for a in names}
    for b0 in range(0, rounds, batch):
        for r in [r for r in wave_at if b0 <= r < b0 + batch]:
            world.launch(wave_at[r])
            launched.update(dict.fromkeys(wave_at[r], r))
        ids = range(b0, min(rounds, b0 + batch))
        reqs = {a: [] for a in names}  # type: dict[str, list[tuple[int, Request]]]
        for n in ids:
            uid = world.tastes.user_ids[users[n]]
            arm = assign(uid, names, salt) if experiment else names[0]
            reqs[arm].append((n, Request(f"sim-{seed}-{n:07d}", uid, f"{uid}-v{n}", start + timedelta(minutes=n))))
        batch_imp, batch_ev = len(imp_rows), len(ev_rows)
        for a in names:
            if not reqs[a]:
                continue
            requests = [r for _, r in reqs[a]]
            slates = plan[a].policy.rank(requests, k)
            best = oracle.rank(requests, k)
            for req, slate, top in zip(requests, slates, best, strict=True):
                _play(world, model, rng, a if experiment else None, plan[a], req, slate, top, imp_rows, ev_rows,
                      stats[a], shown_new[a], launched)
        posted = [_api_event(e) for e in ev_rows[batch_ev:]]
        if posted:
            world.post_events(posted)
        new_imp = conform(pl.DataFrame(imp_rows[batch_imp:]), IMPRESSION_SCHEMA) if len(imp_rows) > batch_imp \
            else pl.DataFrame(schema=IMPRESSION_SCHEMA)
        new_ev = _events(ev_rows[batch_ev:])
        for a in names:
            plan[a].policy.observe(new_imp.filter(pl.col("arm").eq_missing(a if experiment else None)), new_ev)
        if progress:
            progress(min(rounds, b0 + batch), rounds)
    metrics = {a: _metrics(stats[a], len(shown_new[a]), len(launched)) for a in names}
    prices = world.items.select("item_id", "price")
    return SimulationResult(conform(pl.DataFrame(imp_rows), IMPRESSION_SCHEMA) if imp_rows
                            else pl.DataFrame(schema=IMPRESSION_SCHEMA), _events(ev_rows), metrics, prices)


def _play(world: World, model: ShopperModel, rng: np.random.Generator, arm: str | None, spec: Arm, req: Request,
          slate: Any, top: Any, imp_rows: list[dict[str, Any]], ev_rows: list[dict[str, Any]], st: dict[str, Any],
          shown_new: set[str], launched: dict[str, int]) -> None:
    """One session: the shopper looks at the slate and reacts; rows and counters are appended."""
    items = list(slate.items)
    urow = world.user_row[req.user_id]
    best = model.click_probability(world.utility(np.array([urow]), [list(top.items)]))[0].sum()
    st["sessions"] += 1
    if not items:
        st["regret"] += float(best)
        return
    util = world.utility(np.array([urow]), [items])
    expected = float(model.click_probability(util)[0].sum())
    st["regret"] += float(best) - expected
    st["expected_clicks"] += expected
    clicked, carted, bought = (m[0] for m in model.react(util, rng, spec.conversion_lift))
    props = slate.propensities or (1.0,) * len(items)
    scores = slate.scores or (None,) * len(items)
    for p, item in enumerate(items):
        imp_rows.append({"request_id": req.request_id, "timestamp": req.timestamp, "user_id": req.user_id,
                         "session_id": req.session_id, "surface": "recommendations", "item_id": item,
                         "position": p + 1, "score": scores[p], "propensity": float(props[p]),
                         "model_version": spec.policy.name, "arm": arm})
        if item in launched:
            shown_new.add(item)
            st["new_impressions"] += 1
    st["impressions"] += len(items)
    for p in np.flatnonzero(clicked).tolist():
        item = items[p]
        steps = [("click", None)]
        if carted[p]:
            steps.append(("add_to_cart", 1.0))
        if bought[p]:
            steps.append(("purchase", 1.0))
            st["revenue"] += float(world.price.get(item) or 0.0)
        for s, (etype, value) in enumerate(steps):
            ev_rows.append({"event_id": f"{req.request_id}-{p + 1}-{etype}", "user_id": req.user_id, "item_id": item,
                            "event_type": etype, "timestamp": req.timestamp + timedelta(seconds=5 + 10 * s + int(p)),
                            "session_id": req.session_id, "value": value, "request_id": req.request_id})
    st["clicks"] += int(clicked.sum())
    st["carts"] += int(carted.sum())
    st["purchases"] += int(bought.sum())
    st["converted"] += int(bought.any())


def _api_event(e: dict[str, Any]) -> dict[str, Any]:
    """The event as `POST /events` takes it (the request id stays in the simulator's log)."""
    out = {k: v for k, v in e.items() if k != "request_id" and v is not None}
    out["timestamp"] = e["timestamp"].isoformat()
    return out


def _events(rows: list[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=EVENT_LOG_SCHEMA)
    return conform(pl.DataFrame(rows, schema_overrides={"value": pl.Float64}), EVENT_LOG_SCHEMA)


def _metrics(st: dict[str, Any], new_shown: int, launched: int) -> dict[str, float]:
    n, imp = max(st["sessions"], 1), max(st["impressions"], 1)
    return {"sessions": st["sessions"], "impressions": st["impressions"], "clicks": st["clicks"],
            "click_rate": st["clicks"] / imp, "expected_click_rate": st["expected_clicks"] / imp,
            "cart_rate": st["carts"] / imp, "conversion": st["converted"] / n, "revenue_per_session": st["revenue"] / n,
            "cumulative_regret": st["regret"], "new_items_launched": launched,
            "new_item_coverage": new_shown / launched if launched else float("nan"),
            "new_item_impression_share": st["new_impressions"] / imp}
