"""What exploration has learned so far: per cold item, how often it was shown and rewarded, and the LinUCB model.

Why one state for both policies: Thompson sampling reads the per-item counts (a Beta posterior each), LinUCB reads
its ridge matrices and uses the same counts as a feature (an item's own observed rate); both are updated from the
same log, the impression rows of the recommendation lists and the events that name them by `request_id`.

Impressions are **examination-weighted**: an item shown at position 6 is looked at less often than one at 1, so
its misses count for less. The weight of position p is the click rate there over the click rate at 1, estimated
from the log itself and shrunk towards 1/p while there is little of it.

Clicks come later than the impressions they answer (and, through the stream, in any order), so the state keeps
the impressions of the last `attribution_seconds` (`pending`) and the rewards that named an impression it has not
read yet (`orphans`); each reward counts once, for the (request, item) it names.

The state travels in the bundle (`save` / `load`: arrays and Parquet, no pickle), so every replica that serves a
version explores with the same posteriors; `aisle worker` updates it at every refresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

N_FEATURES = 7
"""LinUCB's context size (`aisle.explore.features`)."""
MAX_POSITION = 100
SURFACE = "recommendations"
"""The surface exploration serves (and so learns from)."""

#: context(user_ids, item_ids, timestamps) -> (n, N_FEATURES): the shopper-item features at serving time
Context = Callable[[list[str | None], list[str], pl.Series], np.ndarray]

_PENDING = {"request_id": pl.String(), "item_id": pl.String(), "position": pl.Int32(),
            "timestamp": pl.Datetime("us", "UTC"), "x": pl.Array(pl.Float32(), N_FEATURES), "rewarded": pl.Boolean()}
_ORPHANS = {"request_id": pl.String(), "item_id": pl.String(), "timestamp": pl.Datetime("us", "UTC")}


@dataclass(frozen=True)
class ExploreState:
    item_ids: tuple[str, ...] = ()
    shown: np.ndarray = field(default_factory=lambda: np.zeros(0))  # examination-weighted impressions per item
    rewards: np.ndarray = field(default_factory=lambda: np.zeros(0))  # clicks (or purchases) per item
    a: np.ndarray = field(default_factory=lambda: np.eye(N_FEATURES))  # LinUCB: ridge Gram matrix
    b: np.ndarray = field(default_factory=lambda: np.zeros(N_FEATURES))
    position_shown: np.ndarray = field(default_factory=lambda: np.zeros(MAX_POSITION))
    position_rewards: np.ndarray = field(default_factory=lambda: np.zeros(MAX_POSITION))
    pending: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_PENDING))
    orphans: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_ORPHANS))
    impressions_until: int = 0  # epoch microseconds: impressions up to here have been read (the worker's mark)
    updates: int = 0

    # ---- reading -------------------------------------------------------------------------------------

    def counts(self, item_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(examination-weighted impressions, rewards) of each item, 0 for items never shown."""
        index = {i: n for n, i in enumerate(self.item_ids)}
        rows = np.fromiter((index.get(i, -1) for i in item_ids), np.int64)
        known = rows >= 0
        shown, rewards = np.zeros(len(rows)), np.zeros(len(rows))
        shown[known], rewards[known] = self.shown[rows[known]], self.rewards[rows[known]]
        return shown, rewards

    def examination(self, positions: np.ndarray) -> np.ndarray:
        """The weight of an impression at each (1-based) position: its click rate over position 1's, shrunk
        towards 1/p by 200 impressions' worth, never rising with the position."""
        p = np.arange(1, MAX_POSITION + 1)
        prior = 1.0 / p
        rate = (self.position_rewards + 1e-9) / np.maximum(self.position_shown, 1e-9)
        top = rate[0] if self.position_shown[0] > 0 and self.position_rewards[0] > 0 else 0.0
        measured = rate / top if top > 0 else prior
        trust = self.position_shown / (self.position_shown + 200.0) if top > 0 else np.zeros(MAX_POSITION)
        curve = np.minimum.accumulate(np.clip(trust * measured + (1 - trust) * prior, 0.02, 1.0))
        return curve[np.clip(np.asarray(positions, np.int64), 1, MAX_POSITION) - 1]

    # ---- learning ------------------------------------------------------------------------------------

    def update(self, impressions: pl.DataFrame, events: pl.DataFrame, *, context: Context, cold: Iterable[str],
               reward: str = "click", attribution_seconds: float = 1_800.0) -> ExploreState:
        """This state after new `impressions` (IMPRESSION_SCHEMA rows not seen before) and new `events` (with
        `request_id`): a new state, this one unchanged. Impressions count for the items already tracked and for
        the `cold` ones (what serving explores); `context` gives the LinUCB features each impression had."""
        imp = impressions.filter(pl.col("surface").eq(SURFACE))
        tracked = set(self.item_ids) | set(cold)
        imp = imp.filter(pl.col("item_id").is_in(pl.Series(list(tracked), dtype=pl.String).implode()))
        # read twice (the worker reads a minute back: late writes): what is pending already is not new
        imp = imp.unique(["request_id", "item_id"], keep="first", maintain_order=True).join(
            self.pending.select("request_id", "item_id"), on=["request_id", "item_id"], how="anti")
        ids = list(self.item_ids)
        index = {i: n for n, i in enumerate(ids)}
        for item in imp["item_id"].unique(maintain_order=True).to_list():
            if item not in index:
                index[item] = len(ids)
                ids.append(item)
        shown = np.r_[self.shown, np.zeros(len(ids) - len(self.item_ids))]
        rewards = np.r_[self.rewards, np.zeros(len(ids) - len(self.item_ids))]
        a, b = self.a.copy(), self.b.copy()
        pos_shown, pos_rewards = self.position_shown.copy(), self.position_rewards.copy()
        pending = self.pending
        until = self.impressions_until
        if imp.height:
            rows = np.fromiter((index[i] for i in imp["item_id"].to_list()), np.int64, imp.height)
            positions = imp["position"].to_numpy()
            weight = self.examination(positions)
            np.add.at(shown, rows, weight)
            np.add.at(pos_shown, np.clip(positions, 1, MAX_POSITION) - 1, 1.0)
            x = np.asarray(context(imp["user_id"].to_list(), imp["item_id"].to_list(), imp["timestamp"]),
                           np.float64).reshape(imp.height, N_FEATURES)
            a += (x * weight[:, None]).T @ x
            fresh = imp.select("request_id", "item_id", "position", "timestamp").with_columns(
                pl.Series("x", x.astype(np.float32), dtype=pl.Array(pl.Float32(), N_FEATURES)),
                pl.lit(False).alias("rewarded"))
            pending = pl.concat([pending, fresh.cast(_PENDING)])  # type: ignore[arg-type]
            until = max(until, int(imp["timestamp"].dt.epoch("us").max()))  # type: ignore[arg-type]
        hits = events.filter(pl.col("event_type").eq(reward) & pl.col("request_id").is_not_null()
                             & pl.col("item_id").is_not_null())
        claims = pl.concat([self.orphans, hits.select("request_id", "item_id", "timestamp").cast(_ORPHANS)]) \
            .unique(["request_id", "item_id"], keep="first", maintain_order=True)  # type: ignore[arg-type]
        open_ = pending.with_row_index("_row").filter(~pl.col("rewarded"))
        window = pl.duration(microseconds=int(attribution_seconds * 1e6))
        matched = open_.join(claims, on=["request_id", "item_id"], how="inner", suffix="_reward").filter(
            pl.col("timestamp_reward") <= pl.col("timestamp") + window)
        if matched.height:
            rows = np.fromiter((index[i] for i in matched["item_id"].to_list()), np.int64, matched.height)
            np.add.at(rewards, rows, 1.0)
            np.add.at(pos_rewards, np.clip(matched["position"].to_numpy(), 1, MAX_POSITION) - 1, 1.0)
            b += np.asarray(matched["x"].to_numpy(), np.float64).reshape(matched.height, N_FEATURES).sum(axis=0)
            done = np.zeros(pending.height, bool)
            done[matched["_row"].to_numpy()] = True
            pending = pending.with_columns(pl.col("rewarded") | pl.Series(done))
        known = pending.select("request_id", "item_id")
        orphans = claims.join(known, on=["request_id", "item_id"], how="anti")
        newest = max([until] + ([int(v) for v in [claims["timestamp"].dt.epoch("us").max()] if v is not None]))
        horizon = pl.from_epoch(pl.lit(newest - int(attribution_seconds * 1e6)), "us").dt.replace_time_zone("UTC")
        pending = pending.filter(pl.col("timestamp") >= horizon)
        orphans = orphans.filter(pl.col("timestamp") >= horizon)
        return replace(self, item_ids=tuple(ids), shown=shown, rewards=rewards, a=a, b=b, position_shown=pos_shown,
                       position_rewards=pos_rewards, pending=pending, orphans=orphans, impressions_until=until,
                       updates=self.updates + 1)

    # ---- files ---------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "state.npz", shown=self.shown, rewards=self.rewards, a=self.a, b=self.b,
                 position_shown=self.position_shown, position_rewards=self.position_rewards)
        (folder / "state.json").write_text(json.dumps({"item_ids": list(self.item_ids),
                                                       "impressions_until": self.impressions_until,
                                                       "updates": self.updates}))
        self.pending.write_parquet(folder / "pending.parquet")
        self.orphans.write_parquet(folder / "orphans.parquet")

    @classmethod
    def load(cls, folder: Path) -> ExploreState:
        folder = Path(folder)
        meta = json.loads((folder / "state.json").read_text())
        with np.load(folder / "state.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(item_ids=tuple(meta["item_ids"]), impressions_until=int(meta["impressions_until"]),
                   updates=int(meta["updates"]), pending=pl.read_parquet(folder / "pending.parquet").cast(_PENDING),  # type: ignore[arg-type]
                   orphans=pl.read_parquet(folder / "orphans.parquet").cast(_ORPHANS), **arrays)  # type: ignore[arg-type]


__all__ = ["MAX_POSITION", "N_FEATURES", "SURFACE", "Context", "ExploreState"]
