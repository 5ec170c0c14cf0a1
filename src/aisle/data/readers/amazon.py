"""Amazon Review Data (2018, Ni/Li/McAuley): a category's product metadata and its ratings.

PATH is a folder holding `meta_<Category>.json(.gz)` (JSON lines, one product per line: asin, title, brand,
category [list], description [list], price, also_buy, also_view, main_cat, date, ...) and/or the category's
ratings-only CSV (`<Category>.csv`, no header: `asin,reviewerID,rating,unix_ts`); or PATH is one of those
files, and `?meta=PATH` / `?ratings=PATH` name the other (or replace what the folder holds). `?encoding=`
applies to both (default utf-8).

Events: one `rating` event per CSV row: user_id = reviewerID, item_id = asin, value = the 1-5 star rating,
timestamp = unix_ts in epoch seconds (a review date: day resolution).

Items, from the metadata, cleaned because much of it is scraped page text:
- item_id = asin. The files repeat products (1,065 of Magazine_Subscriptions' 2,320 asins sit on two
  identical lines, 3,385 lines in all), so items hold one row per asin and the latest line wins (the
  store's upsert rule); the items total is the number of distinct asins (plus lines that have none, which
  are rejected), so loaded + rejected = total counts products, not repeated lines. A product whose latest
  line is bad is rejected with that line, not silently replaced by an older one.
- title: HTML tags and tag fragments are removed and entities decoded; most 2018 titles are scraped junk
  such as `<span class="a-size-medium a-color-secondary"` (3,153 of 3,385 lines here), which cleans to an
  empty title rather than junk text. Search should use brand, categories and description for these items.
- description: the description paragraphs, each cleaned the same way, joined by newlines.
- brand: as given (whitespace collapsed), empty -> null.
- categories: the category list as a path from the root, INCLUDING the root (`Magazine Subscriptions`),
  even though it repeats main_cat: `Item.categories` is a path from the root by definition, and the root
  keeps paths from different Amazon categories apart when several are loaded into one store. An empty list
  falls back to [main_cat], so every product sits under its department.
- price: "$12.99" / "$1,299.00" -> 12.99 / 1299.0; empty -> null; a negative price is rejected (by
  `validate_items`). Text that is not one amount, such as a range "$10.99 - $24.99", gives a null price with
  the text kept as attributes["price_text"]; page fragments (CSS/HTML, all 18 non-empty prices here) give a
  null price and are not kept.
- attributes: {"also_buy": [asin...], "also_view": [asin...], "main_cat": "...", "price_text": "..."}, each
  key only when non-empty (also_buy/also_view are ground truth for similar-items and bought-together).
  main_cat values that are an `<img ... alt="NAME">` tag become NAME. Other keys (feature, rank, details,
  images, tech1/2, fit, similar_item, date) are not kept: they are mostly page fragments.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.readers.generic import json_fields, merge_attributes
from aisle.data.textio import iter_jsonl, open_binary, read_delimited
from aisle.data.validation import LINE, Reject, RejectLog, validate_events, validate_items

RATING_COLUMNS = ["item_id", "user_id", "value", "timestamp"]  # asin, reviewerID, rating, unix_ts
_MONEY = r"^-?\s*\$?\s*-?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$"
_META_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
_RATING_SUFFIXES = (".csv", ".csv.gz")
_FILE = "_file"


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    meta_files, rating_files = _locate(path, options)
    encoding = options.get("encoding", "utf-8")
    name = path.name if path.is_dir() else path.name.split(".")[0].removeprefix("meta_")
    data = Dataset(name=name, log=log)
    staged = RejectLog(on_error="skip")  # every reject first, so `fail` names the earliest bad line
    if meta_files:
        raw = _latest_per_item(pl.concat([_read_meta(f, encoding, log) for f in meta_files]))
        log.seen("items", raw.height)
        raw = _clean_meta(raw)
        data.items = pl.concat([
            validate_items(part.drop(_FILE), file=str(file), log=staged)
            for file in meta_files if (part := raw.filter(pl.col(_FILE) == str(file))).height
        ] or [data.items])
    if rating_files:
        data.events = pl.concat([_read_ratings(f, encoding, log, staged) for f in rating_files])
    log.extend(staged.rejects)
    return data


def _locate(path: Path, options: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    meta: list[Path] = []
    ratings: list[Path] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        meta = [p for p in files if p.name.startswith("meta_") and p.name.endswith(_META_SUFFIXES)]
        ratings = [p for p in files if p.name.endswith(_RATING_SUFFIXES)]
    elif path.name.endswith(_META_SUFFIXES):
        meta = [path]
    elif path.name.endswith(_RATING_SUFFIXES):
        ratings = [path]
    else:
        raise ValueError(f"{path}: expected an Amazon meta_*.json(.gz) file, a ratings .csv or a folder of them")
    for key, found in (("meta", meta), ("ratings", ratings)):
        if options.get(key):
            other = Path(options[key])
            if not other.exists() and (path.parent / other).exists():
                other = path.parent / other
            if not other.exists():
                raise FileNotFoundError(f"{other}: no such file (from ?{key}=)")
            found[:] = [other]
    if not meta and not ratings:
        raise ValueError(f"{path}: no meta_*.json(.gz) or ratings .csv file here")
    return meta, ratings


# ---- metadata -------------------------------------------------------------------------------------


def _read_meta(path: Path, encoding: str, log: RejectLog) -> pl.DataFrame:
    """The file's lines as raw columns (plus `_file`, `_line`); bad JSON lines are counted and rejected here."""
    cols: dict[str, list[Any]] = {k: [] for k in ("item_id", "title", "brand", "price", "main_cat")}
    lists: dict[str, list[list[str]]] = {k: [] for k in ("description", "categories", "also_buy", "also_view")}
    lines: list[int] = []
    for no, obj in iter_jsonl(path, table="items", log=log, encoding=encoding):
        if not isinstance(obj, dict):
            log.seen("items", 1)
            log.add(Reject(str(path), no, "items", "(line)", f"not a JSON object but {type(obj).__name__}",
                           str(obj)[:500]))
            continue
        cols["item_id"].append(_scalar(obj.get("asin")))
        cols["title"].append(_scalar(obj.get("title")))
        cols["brand"].append(_scalar(obj.get("brand")))
        cols["price"].append(_scalar(obj.get("price")))
        cols["main_cat"].append(_scalar(obj.get("main_cat")))
        lists["description"].append(_strings(obj.get("description")))
        lists["categories"].append(_strings(obj.get("category")))
        lists["also_buy"].append(_strings(obj.get("also_buy")))
        lists["also_view"].append(_strings(obj.get("also_view")))
        lines.append(no)
    raw = pl.DataFrame(
        {
            **{k: pl.Series(k, v, dtype=pl.String) for k, v in cols.items()},
            **{k: pl.Series(k, v, dtype=pl.List(pl.String)) for k, v in lists.items()},
            LINE: pl.Series(LINE, lines, dtype=pl.Int64),
        }
    )
    return raw.with_columns(pl.col("item_id").str.strip_chars(), pl.lit(str(path)).alias(_FILE))


def _latest_per_item(df: pl.DataFrame) -> pl.DataFrame:
    """The latest line of each asin (files in name order); lines without an asin stay, one each, to be rejected."""
    blank = pl.col("item_id").is_null() | (pl.col("item_id") == "")
    df = df.with_row_index("_order")
    latest = df.filter(~blank).unique(subset="item_id", keep="last")
    return pl.concat([latest, df.filter(blank)]).sort("_order").drop("_order")


def _clean_meta(df: pl.DataFrame) -> pl.DataFrame:
    main_cat = pl.coalesce(pl.col("main_cat").str.extract(r'alt="([^"]*)"', 1), _strip_tags(pl.col("main_cat")))
    price = pl.col("price").str.strip_chars()
    money = price.str.contains(_MONEY)
    df = df.with_columns(
        _unescape(df.select(_strip_tags(pl.col("title"))).to_series()).fill_null("").alias("title"),
        _unescape(df.select(
            pl.col("description").list.eval(_strip_tags(pl.element())).list.eval(
                pl.element().filter(pl.element() != "")).list.join("\n")).to_series()).alias("description"),
        _unescape(df.select(_squeeze(pl.col("brand"))).to_series()).alias("brand"),
        pl.when(money).then(price.str.replace_all(r"[\s$,]", "")).alias("price"),
        pl.when(~money & (price != "") & ~price.str.contains(r"[<>{}]") & (price.str.len_chars() <= 64))
        .then(price).alias("price_text"),
        pl.when(main_cat != "").then(main_cat).alias("main_cat"),
        _unescape_lists(df["categories"]),
    )
    df = df.with_columns(
        pl.when(pl.col("categories").list.len() == 0).then(pl.concat_list(pl.col("main_cat")).list.drop_nulls())
        .otherwise(pl.col("categories")).alias("categories"),
    )
    inner = json_fields(df.schema, ["also_buy", "also_view", "main_cat", "price_text"])
    return df.with_columns(merge_attributes(None, inner).alias("attributes")).drop(
        "also_buy", "also_view", "main_cat", "price_text")


def _strip_tags(text: pl.Expr) -> pl.Expr:
    """Remove HTML tags, an unclosed tag at the end and a tag's tail at the start; collapse whitespace."""
    return _squeeze(
        text.str.replace_all(r"<[^<>]*>", " ")
        .str.replace_all(r"<[^<>]*$", " ")
        .str.replace_all(r"^[^<>]*\"\s*/?>", " ")
    )


def _squeeze(text: pl.Expr) -> pl.Expr:
    squeezed = text.str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(squeezed != "").then(squeezed)


def _unescape(text: pl.Series) -> pl.Series:
    """Decode HTML entities (&amp;, &ecirc;, &#39;...), calling Python only for values that contain '&'."""
    has = text.str.contains("&", literal=True).fill_null(False)
    if not has.any():
        return text
    decoded = text.filter(has).map_elements(html.unescape, return_dtype=pl.String)
    return text.clone().scatter(has.arg_true(), decoded)


def _unescape_lists(lists: pl.Series) -> pl.Series:
    """Each list's strings entity-decoded and whitespace-squeezed, empty ones dropped (one row per list kept)."""
    flat = lists.to_frame("v").with_row_index("_row").explode("v", empty_as_null=True, keep_nulls=True)
    flat = flat.with_columns(_unescape(flat.select(_squeeze(pl.col("v"))).to_series()))
    back = flat.group_by("_row", maintain_order=True).agg(pl.col("v").drop_nulls())
    return back["v"].cast(pl.List(pl.String)).alias(lists.name)


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v is not None)
    return str(value)


def _strings(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and not isinstance(v, (list, dict))]
    return [str(value)]


# ---- ratings --------------------------------------------------------------------------------------


def _read_ratings(path: Path, encoding: str, log: RejectLog, staged: RejectLog) -> pl.DataFrame:
    header = _has_header(path, encoding)
    raw = read_delimited(path, table="events", log=log, encoding=encoding, header=header or RATING_COLUMNS)
    if raw.columns == [LINE]:
        return validate_events(raw, file=str(path), log=staged)
    if header:  # a copy with a header line: columns by position, whatever their names
        if raw.width - 1 != len(RATING_COLUMNS):
            raise ValueError(f"{path}: a ratings file has 4 columns (asin, reviewerID, rating, unix_ts)")
        raw = raw.rename(dict(zip([c for c in raw.columns if c != LINE], RATING_COLUMNS, strict=True)))
    df = raw.with_columns(pl.lit("rating").alias("event_type"))
    return validate_events(df, file=str(path), log=staged, ts_unit="s")


def _has_header(path: Path, encoding: str) -> bool:
    """True when the first line is a header (its rating and time fields are not numbers)."""
    try:
        with open_binary(path) as fh:
            first = fh.readline().decode(encoding).strip().split(",")
    except (UnicodeDecodeError, OSError):
        return False
    if len(first) != len(RATING_COLUMNS):
        return False

    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    return not number(first[2]) and not number(first[3])
