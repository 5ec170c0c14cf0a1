"""Home Depot Product Search Relevance (Kaggle 2016): human relevance judgments of (query, product) pairs.

A CSV (gzip is fine) with header `id,product_uid,product_title,search_term,relevance`, one row per judged
pair: a real homedepot.com query, a product it returned, and the mean of >= 3 raters' scores on 1 (irrelevant),
2 (partially) to 3 (perfect match). The original files are ISO-8859-1 (they hold stray latin-1 / Mac-Roman
bytes such as `30\\xe5\\xa1` for a degree sign), so that is the default; `?encoding=` overrides it.

It is search ground truth, not shop behaviour, so it maps onto two tables and no events:

- `items`: item_id = product_uid, title = product_title, one row per product. A product judged under several
  queries repeats its title; where the title differs between rows (the site renamed a product: 11 products in
  the development file), the latest row's title wins and the others are kept in attributes
  `{"other_titles": [...]}` - each judgment was made against the title the rater saw. The items total is the
  number of distinct product ids among rows that parsed.
- `extras["judgments"]`: rows kept apart from events (there are none): columns pair_id (the CSV id), query
  (search_term, raw typos included), item_id, relevance (Float64 in [1, 3]), one row per CSV row, counted as
  the `judgments` table. A row whose relevance
  is missing, not a number or outside [1, 3] is rejected naming the field, as is one without id, query or
  product. A file without a relevance column (Kaggle's test.csv) gives null relevances.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.readers.generic import json_fields, merge_attributes
from aisle.data.textio import read_delimited
from aisle.data.validation import LINE, RejectLog, Rule, apply_rules, validate_items

COLUMNS = ("id", "product_uid", "product_title", "search_term")
JUDGMENT_SCHEMA: dict[str, pl.DataType] = {
    "pair_id": pl.String(),
    "query": pl.String(),
    "item_id": pl.String(),
    "relevance": pl.Float64(),
}
RELEVANCE_RANGE = (1.0, 3.0)


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    raw = read_delimited(path, table="judgments", log=log, encoding=options.get("encoding", "iso-8859-1"))
    data = Dataset(name=path.name.split(".")[0], log=log, extras={"judgments": pl.DataFrame(schema=JUDGMENT_SCHEMA)})
    if raw.height == 0:
        return data
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not a Home Depot relevance file: no column(s) {', '.join(missing)}")
    file = str(path)
    staged = RejectLog(on_error="skip")  # every reject first, so `fail` names the earliest bad line
    data.extras["judgments"] = _judgments(raw, file, staged)
    data.items = _items(raw, file, log, staged)
    log.extend(staged.rejects)
    return data


def _blank(name: str) -> pl.Expr:
    return pl.col(name).is_null() | (pl.col(name) == "")


def _judgments(raw: pl.DataFrame, file: str, log: RejectLog) -> pl.DataFrame:
    has_relevance = "relevance" in raw.columns
    text = pl.col("relevance").str.strip_chars() if has_relevance else pl.lit(None, dtype=pl.String)
    df = raw.select(
        pl.col(LINE),
        pl.col("id").str.strip_chars().alias("pair_id"),
        pl.col("search_term").str.strip_chars().alias("query"),
        pl.col("product_uid").str.strip_chars().alias("item_id"),
        text.cast(pl.Float64, strict=False).alias("relevance"),
        text.alias("_raw_relevance"),
    )
    low, high = RELEVANCE_RANGE
    rules: list[Rule] = [
        ("pair_id", _blank("pair_id"), pl.lit("missing pair id")),
        ("query", _blank("query"), pl.lit("missing query")),
        ("item_id", _blank("item_id"), pl.lit("missing item id")),
    ]
    if has_relevance:
        rules += [
            ("relevance", _blank("_raw_relevance"), pl.lit("missing relevance")),
            ("relevance", ~pl.col("relevance").is_between(low, high).fill_null(False),
             pl.format(f"relevance '{{}}' is not a number in [{low:g}, {high:g}]", pl.col("_raw_relevance"))),
        ]
    good = apply_rules(df, rules, file=file, table="judgments", log=log)
    return good.select(list(JUDGMENT_SCHEMA)).cast(JUDGMENT_SCHEMA)  # type: ignore[arg-type]


def _items(raw: pl.DataFrame, file: str, log: RejectLog, staged: RejectLog) -> pl.DataFrame:
    """One row per product: the latest row's title, earlier different titles in attributes."""
    rows = raw.select(
        pl.col(LINE),
        pl.col("product_uid").str.strip_chars().alias("item_id"),
        pl.col("product_title").str.strip_chars().alias("title"),
    ).filter(~_blank("item_id"))
    latest = rows.unique(subset="item_id", keep="last")
    others = (
        rows.filter(~_blank("title"))
        .join(latest.select("item_id", pl.col("title").alias("_final")), on="item_id")
        .filter(pl.col("title") != pl.col("_final").fill_null(""))
        .sort(LINE)
        .unique(subset=["item_id", "title"], keep="first", maintain_order=True)
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("title").alias("other_titles"))
    )
    df = latest.join(others, on="item_id", how="left").sort(LINE)
    log.seen("items", df.height)
    df = df.with_columns(merge_attributes(None, json_fields(df.schema, ["other_titles"])).alias("attributes"))
    return validate_items(df.drop("other_titles"), file=file, log=staged)
