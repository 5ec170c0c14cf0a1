"""REES46 "eCommerce behavior data from multi category store" (Kaggle / Open CDP): one CSV of shop events.

Header `event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session`, one row
per event, e.g. `2019-10-01 00:00:04 UTC,cart,1004237,2053013555631882655,electronics.smartphone,apple,1081.98,
535871217,c6bd7419-...`.

Events: user_id, item_id = product_id, session_id = user_session, timestamp = event_time (parsed with the
file's one format `%Y-%m-%d %H:%M:%S UTC`; `?ts_format=` overrides it, because guessing among many formats
costs several times as much on the 42M-row monthly files). event_type `view`/`cart`/`purchase`/
`remove_from_cart` become view/add_to_cart/purchase/remove_from_cart; any other value is rejected as an
unknown REES46 event type, never passed through (a `click` in this file would not mean Aisle's click).
`value` is the row's price on purchases (the amount paid: REES46 logs one unit per row) and empty otherwise.

Items: the format has no catalog, but every row carries its product's facts, so `items` holds one row per
product_id: brand, categories = category_code split on '.' (`electronics.smartphone` -> [electronics,
smartphone]), price, and attributes `{"category_id": "..."}` (kept as text: a 64-bit id). No titles exist.
Facts come from every row that parsed (an event rejected for, say, its timestamp still describes its
product), and the latest row in file order (= time order) wins, as an upsert would. So the items table's
total is the number of distinct product ids among parsed rows; if a product's latest row is bad (e.g. a
price that is not a number), that product is rejected with that line rather than silently taking an older
row. A row without product_id is one events reject (missing item id) and describes no product.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.readers.generic import json_fields, map_values, merge_attributes
from aisle.data.textio import read_delimited
from aisle.data.validation import LINE, RejectLog, Rule, apply_rules, validate_events, validate_items

COLUMNS = ("event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price", "user_id",
           "user_session")
EVENT_TYPES = {"view": "view", "cart": "add_to_cart", "purchase": "purchase", "remove_from_cart": "remove_from_cart"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    raw = read_delimited(path, table="events", log=log, encoding=options.get("encoding", "utf-8"))
    data = Dataset(name=path.name.split(".")[0], log=log)
    if raw.height == 0:
        return data
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not a REES46 events file: no column(s) {', '.join(missing)}")
    file = str(path)
    staged = RejectLog(on_error="skip")  # every reject first, so `fail` names the earliest bad line
    data.events = _events(raw, file, staged, options.get("ts_format") or TIME_FORMAT)
    data.items = _items(raw, file, log, staged)
    log.extend(staged.rejects)
    return data


def _events(raw: pl.DataFrame, file: str, log: RejectLog, ts_format: str) -> pl.DataFrame:
    source_type = pl.col("_source_type")
    mapped = map_values(raw["event_type"], lambda v: EVENT_TYPES.get(v.strip().lower(), ""))  # "" = unknown
    df = raw.select(
        pl.col(LINE),
        pl.col("user_id"),
        pl.col("product_id").alias("item_id"),
        pl.col("event_type").alias("_source_type"),
        mapped.alias("event_type"),
        pl.col("event_time").alias("timestamp"),
        pl.col("user_session").alias("session_id"),
        pl.when(mapped == "purchase").then(pl.col("price")).alias("value"),
    )
    rule: Rule = (
        "event_type",
        pl.col("event_type").is_null() | (pl.col("event_type") == ""),
        pl.when(source_type.is_null()).then(pl.lit("missing event type")).otherwise(
            pl.format("unknown REES46 event type '{}' (expected view, cart, purchase or remove_from_cart)",
                      source_type)),
    )
    df = apply_rules(df, [rule], file=file, table="events", log=log).drop("_source_type")
    return validate_events(df, file=file, log=log, ts_format=ts_format)


def _items(raw: pl.DataFrame, file: str, log: RejectLog, staged: RejectLog) -> pl.DataFrame:
    """One row per product id: the latest parsed row's facts (see the module docstring for the accounting)."""
    df = (
        raw.select(
            pl.col(LINE),
            pl.col("product_id").str.strip_chars().alias("item_id"),
            pl.col("brand").str.strip_chars(),
            pl.col("category_code").str.strip_chars().str.split(".").alias("categories"),
            pl.col("price"),
            pl.col("category_id").str.strip_chars(),
        )
        .filter(pl.col("item_id").is_not_null() & (pl.col("item_id") != ""))
        .unique(subset="item_id", keep="last")
        .sort(LINE)
    )
    log.seen("items", df.height)
    df = df.with_columns(
        pl.when(pl.col("brand") != "").then(pl.col("brand")).alias("brand"),
        merge_attributes(None, json_fields(df.schema, ["category_id"])).alias("attributes"),
    ).drop("category_id")
    return validate_items(df, file=file, log=staged)  # rejects a price that is not a number, or negative
