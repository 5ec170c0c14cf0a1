"""Refresh: fold new events and catalog changes into a bundle without a refit.

What moves: trending and popularity (every item, new ones included); the counts behind Markov transitions and
bought-together rules, and the neighbour rows they feed (`Pipeline.update`: a basket that goes on across the
watermark counts once, as in a fit); the catalog (new items get indices after the old ones, so every index the
bundle's arrays hold stays valid; changed items update their brand, category, price and availability); and the
search index, by the new and changed items only (`SearchEngine.with_items`: a delta beside the base index, saved
with it, so a new item costs its own documents, not a rebuild over the catalog; the refit builds the whole index
again). What waits for the next refit: item-kNN, the user models, the deep model, the combiner, and neighbours for
new items (serving places a new item by resemblance only when it is not in the bundle yet). The stored histories of
known shoppers take their new events (so the next refresh links each shopper's next event to the right previous
one, and requests see them after live state expires); their precomputed ranked lists are dropped, so they are
answered by the pipeline on the longer history. Shoppers new since the bundle wait for the refit to get a stored
history (their transitions and baskets inside one refresh still count).

Reading is proportional to the new events (`read_events_since`); the catalog is compared row by row (one read of
the items table); writing the new version hard-links the parts it did not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from aisle.bundle import Bundle, Histories
from aisle.models.base import EVENT_WEIGHTS, Vocab
from aisle.pipeline import item_attributes
from aisle.types import EVENT_TYPES, ITEM_SCHEMA, conform


@dataclass(frozen=True)
class Folded:
    """What a fold changed."""

    events: int
    new_items: int
    changed_items: int
    updated_sources: list[str]

    @property
    def catalog(self) -> bool:
        """True when the catalog (and so the search index and the items' attributes) changed."""
        return bool(self.new_items or self.changed_items)

    @property
    def empty(self) -> bool:
        return not (self.events or self.new_items or self.changed_items)

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "new_items": self.new_items, "changed_items": self.changed_items,
                "updated_sources": self.updated_sources}


def _catalog_changes(bundle: Bundle, items: pl.DataFrame | None) -> tuple[pl.DataFrame, list[str]]:
    """(rows new or different from the bundle's catalog, ids of the new ones)."""
    if items is None or items.is_empty():
        return conform(pl.DataFrame(), ITEM_SCHEMA).clear(), []
    items = conform(items, ITEM_SCHEMA)
    if bundle.catalog is None:
        return items, [i for i in items["item_id"].to_list() if i not in bundle.items.index]
    old = conform(bundle.catalog, ITEM_SCHEMA).filter(pl.col("title").is_not_null() | pl.col("brand").is_not_null())
    key = list(ITEM_SCHEMA)
    changed = items.select(key).join(old.select(key), on=key, how="anti", nulls_equal=True)
    new_ids = [i for i in changed["item_id"].to_list() if i not in bundle.items.index]
    return changed, new_ids


def fold(bundle: Bundle, events: pl.DataFrame, items: pl.DataFrame | None = None, *, embedder: Any = None
         ) -> Folded:
    """Fold `events` (EVENT_SCHEMA, not yet in `bundle`) and the store's catalog `items` into `bundle`, in place.
    (`embedder` is not needed any more: the search delta embeds new items with the index's own encoder.)"""
    changed, new_ids = _catalog_changes(bundle, items)
    seen_only = [i for i in events["item_id"].drop_nulls().unique(maintain_order=True).to_list()
                 if i not in bundle.items.index and i not in set(new_ids)]
    added = [*new_ids, *seen_only]
    if added:
        bundle.items = Vocab.of([*bundle.items.ids.tolist(), *added])
    n = len(bundle.items)
    if changed.height or added:
        base = conform(bundle.catalog, ITEM_SCHEMA) if bundle.catalog is not None else \
            conform(pl.DataFrame(), ITEM_SCHEMA).clear()
        table = pl.concat([base.filter(~pl.col("item_id").is_in(changed["item_id"].implode())), changed])
        frame = pl.DataFrame({"item_id": pl.Series(bundle.items.ids.tolist(), dtype=pl.String)})
        bundle.catalog = frame.join(table.unique("item_id", keep="last"), on="item_id", how="left",
                                    maintain_order="left")
        if bundle.pipeline is not None:
            bundle.pipeline = bundle.pipeline.with_items(item_attributes(bundle.catalog, n))
        if bundle.search is not None and changed.height:  # the changed rows as a delta, not the whole catalog
            bundle.search = bundle.search.with_items(changed.filter(pl.col("title").is_not_null()))
    updated: list[str] = []
    if events.height:
        enc = _encoded(bundle, events)
        if bundle.pipeline is not None:
            updated = bundle.pipeline.update(enc)
        _extend_histories(bundle, enc.filter(pl.col("is_new") & (pl.col("user_idx") < len(bundle.users))))
    return Folded(events.height, len(added), changed.height - len(new_ids), updated)


def _extend_histories(bundle: Bundle, new: pl.DataFrame, keep: int = 50) -> None:
    """Append known shoppers' new events to the bundle's stored histories (the newest `keep`, or the longest kept
    already), and drop those shoppers' precomputed ranked lists, which were computed on the shorter history."""
    h = bundle.histories
    if h is None or new.is_empty():
        return
    keep = max(keep, int(h.lengths().max(initial=0)))
    codes = {t: i for i, t in enumerate(EVENT_TYPES)}
    user = np.concatenate([np.repeat(np.arange(len(h.ptr) - 1), h.lengths()), new["user_idx"].to_numpy()])
    items = np.concatenate([h.items, new["item_idx"].to_numpy().astype(np.int32)])
    types = np.concatenate([h.types, new["event_type"].replace_strict(codes, default=0, return_dtype=pl.Int8)
                            .to_numpy().astype(np.int8)])
    times = np.concatenate([h.times, new["timestamp"].dt.epoch("us").to_numpy().astype(np.int64)])
    later = np.r_[np.zeros(h.total, np.int8), np.ones(new.height, np.int8)]
    order = np.lexsort((np.arange(len(user)), later, user))  # per shopper: stored first, then the new in time order
    user, items, types, times = user[order], items[order], types[order], times[order]
    counts = np.bincount(user, minlength=len(h.ptr) - 1)
    end = np.repeat(np.cumsum(counts), counts)
    ok = end - np.arange(len(user)) <= keep  # the newest `keep` of each shopper
    counts = np.bincount(user[ok], minlength=len(h.ptr) - 1)
    bundle.histories = Histories(np.r_[0, np.cumsum(counts)].astype(np.int64), items[ok], types[ok], times[ok])
    if bundle.ranked:
        touched = np.unique(new["user_idx"].to_numpy())
        bundle.ranked = {k: v.copy() for k, v in bundle.ranked.items()}
        bundle.ranked["items"][touched] = -1


def _encoded(bundle: Bundle, events: pl.DataFrame) -> pl.DataFrame:
    """`events` in TrainData's encoded columns with `is_new`, each known shopper's stored events first (not new:
    they only give the new ones their context: the transition from the shopper's last event into their first new
    one, and the part of a basket that began before the watermark, so a basket counts once, as in a fit). Shoppers
    new since the bundle get indices after the known ones (the bundle's user vocabulary is not changed: that is a
    refit's)."""
    ev = events.filter(pl.col("item_id").is_not_null()).with_row_index("_order")
    known = bundle.users.index
    fresh_users = [u for u in ev["user_id"].unique(maintain_order=True).to_list() if u not in known]
    users = Vocab.of([*bundle.users.ids.tolist(), *fresh_users]) if fresh_users else bundle.users
    weight = pl.col("event_type").replace_strict(dict(EVENT_WEIGHTS), default=1.0, return_dtype=pl.Float32)
    enc = ev.select(pl.Series("user_idx", users.encode(ev["user_id"].to_list()), dtype=pl.Int32),
                    pl.Series("item_idx", bundle.items.encode(ev["item_id"].to_list()), dtype=pl.Int32),
                    "timestamp", "event_type", "value", weight.alias("weight"), pl.lit(True).alias("is_new"), "_order")
    h = bundle.histories
    if h is not None:
        who = np.unique(enc["user_idx"].to_numpy())
        who = who[who < len(h.ptr) - 1]
        lengths = h.ptr[who + 1] - h.ptr[who]
        at = np.repeat(h.ptr[who], lengths) + np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths,
                                                                                         lengths)
        if len(at):
            stamps = pl.Series(h.times[at]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
            prev = pl.DataFrame({"user_idx": pl.Series(np.repeat(who, lengths), dtype=pl.Int32),
                                 "item_idx": pl.Series(h.items[at], dtype=pl.Int32),
                                 "timestamp": stamps.cast(enc.schema["timestamp"]),
                                 "event_type": pl.Series(np.asarray(EVENT_TYPES)[h.types[at]], dtype=pl.String)})
            prev = prev.with_columns(pl.lit(None, pl.Float64).alias("value"), weight.alias("weight"),
                                     pl.lit(False).alias("is_new"), pl.lit(0, pl.UInt32).alias("_order"))
            enc = pl.concat([prev.select(enc.columns).cast(enc.schema), enc])
    return enc.sort(["user_idx", "is_new", "timestamp", "_order"]).drop("_order")


__all__ = ["Folded", "fold"]
