"""Validation that loses nothing: every bad row becomes a `Reject` naming file, line, field and reason.

Readers parse text into frames that keep each row's source line in a `_line` column; the validators
here check those frames column-wise (no Python loop per row) and split them into good rows and
rejects. A `RejectLog` applies the policy: under `fail` the first reject (by line) raises `DataError`,
under `skip` rejects are kept, counted and can be written to a rejects file. Either way
loaded + rejected = total for every table.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from aisle.data import checks
from aisle.types import EVENT_SCHEMA, EVENT_TYPES, ITEM_SCHEMA, ITEMLESS_EVENT_TYPES, TIME, USER_SCHEMA, conform

OnError = Literal["fail", "skip"]
LINE = "_line"


@dataclass(frozen=True, slots=True)
class Reject:
    """One row that could not be loaded, and why. `line` is 1-based, as an editor shows it."""

    file: str
    line: int
    table: str
    field: str
    reason: str
    raw: str = ""

    def message(self) -> str:
        return f"{self.file}:{self.line}: {self.table} field '{self.field}': {self.reason}"


class DataError(ValueError):
    """Raised under `--on-error fail` at the first bad row; the message names file, line, field, reason."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(reject.message())
        self.reject = reject


@dataclass
class RejectLog:
    """Collects rejects under one policy and counts rows seen per table."""

    on_error: OnError = "fail"
    rejects: list[Reject] = field(default_factory=list)
    totals: Counter[str] = field(default_factory=Counter)

    def add(self, reject: Reject) -> None:
        if self.on_error == "fail":
            raise DataError(reject)
        self.rejects.append(reject)

    def extend(self, rejects: Iterable[Reject]) -> None:
        ordered = sorted(rejects, key=lambda r: (r.file, r.line))
        if ordered and self.on_error == "fail":
            raise DataError(ordered[0])
        self.rejects.extend(ordered)

    def seen(self, table: str, n: int) -> None:
        """Count `n` rows of `table` read from a source (good or bad)."""
        self.totals[table] += n

    def rejected(self, table: str) -> int:
        return sum(1 for r in self.rejects if r.table == table)

    def write(self, path: Path) -> None:
        """Write rejects as JSON lines (one object per rejected row) for a person to fix and re-ingest."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for r in self.rejects:
                fh.write(
                    json.dumps(
                        {"file": r.file, "line": r.line, "table": r.table, "field": r.field,
                         "reason": r.reason, "raw": r.raw},
                        ensure_ascii=False,
                    )
                    + "\n"
                )


def _rejects_from(bad: pl.DataFrame, file: str, table: str, fld: str, hidden: Collection[str] = ()) -> list[Reject]:
    """Turn rows of `bad` (with `_line`, `_reason` and the row's columns) into Reject records."""
    data_cols = [c for c in bad.columns if c not in (LINE, "_reason") and c not in hidden]
    out = []
    for row in bad.iter_rows(named=True):
        raw = json.dumps({c: _jsonable(row[c]) for c in data_cols}, ensure_ascii=False, default=str)
        out.append(Reject(file, int(row[LINE]), table, fld, row["_reason"], raw))
    return out


def _jsonable(v: object) -> object:
    return v if v is None or isinstance(v, (str, int, float, bool, list)) else str(v)


Rule = tuple[str, pl.Expr, pl.Expr]  # (field, bad-row predicate, reason text)


def apply_rules(df: pl.DataFrame, rules: list[Rule], *, file: str, table: str, log: RejectLog,
                hidden: Collection[str] = ()) -> pl.DataFrame:
    """Keep rows that break no rule; each breaking row is rejected once, for the first rule it breaks.

    `hidden` names working columns (e.g. a cleaned copy of a field) left out of a reject's `raw`, which shows
    the row as the source gave it.
    """
    if LINE not in df.columns:
        df = df.with_row_index(LINE, offset=1)
    if df.is_empty() or not rules:
        return df
    bad_mask = reject_broken(df, rules, file=file, table=table, log=log, hidden=hidden)
    return df if bad_mask is None else df.filter(~bad_mask)


def reject_broken(df: pl.DataFrame, rules: list[Rule], *, file: str, table: str, log: RejectLog,
                  hidden: Collection[str] = ()) -> pl.Series | None:
    """The rejecting half of `apply_rules` (`df` has `_line`): log each breaking row for the first rule it
    breaks and return the mask of those rows, or None when every row is good. For a caller that keeps only
    some columns of the good rows and so filters fewer of them.
    """
    # index of the first broken rule per row (-1 when none): one vectorized pass, no per-row Python
    first = pl.lit(-1, dtype=pl.Int32)
    for i in reversed(range(len(rules))):
        first = pl.when(rules[i][1].fill_null(False)).then(pl.lit(i, dtype=pl.Int32)).otherwise(first)
    rule = df.select(first.alias("_rule")).to_series()
    bad_mask = rule >= 0
    if not bad_mask.any():  # the common case: no copy at all
        return None
    bad = df.filter(bad_mask).with_columns(rule.filter(bad_mask).alias("_rule"))
    rejects: list[Reject] = []
    for i, (fld, _pred, reason) in enumerate(rules):
        sub = bad.filter(pl.col("_rule") == i)
        if sub.height:
            sub = sub.with_columns(reason.alias("_reason")).drop("_rule")
            rejects.extend(_rejects_from(sub, file, table, fld, hidden))
    log.extend(rejects)
    return bad_mask


def _text(name: str) -> pl.Expr:
    """The column as stripped text (ids are kept without surrounding spaces)."""
    return pl.col(name).cast(pl.String).str.strip_chars()


def _blank(name: str) -> pl.Expr:
    return pl.col(name).is_null() | (pl.col(name).cast(pl.String).str.strip_chars() == "")


# ---- timestamps ---------------------------------------------------------------------------------

_STRING_FORMATS = (
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%:z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.fZ",
    "%Y-%m-%d %H:%M:%SZ",
    "%Y-%m-%d %H:%M:%S%.f%:z",
    "%Y-%m-%d %H:%M:%S%:z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
)
_UNIT_FACTOR = {"s": 1_000_000, "ms": 1_000, "us": 1}


def epoch_unit(values: pl.Series) -> str:
    """Guess seconds/milliseconds/microseconds from the magnitude of epoch numbers."""
    med = values.drop_nulls().abs().median()
    if med is None:
        return "s"
    med = float(med)  # type: ignore[arg-type]
    return "us" if med > 1e14 else "ms" if med > 1e11 else "s"


def parse_timestamps(col: pl.Series, *, unit: str | None = None, fmt: str | None = None) -> pl.Series:
    """Parse epoch numbers or date strings into UTC microseconds; unparseable values become null.

    Validation compares the result with the raw column to reject what did not parse, so this never
    raises on bad values.
    """
    name = col.name
    if col.dtype == TIME:
        return col
    if isinstance(col.dtype, pl.Datetime):
        if col.dtype.time_zone is None:
            return col.dt.replace_time_zone("UTC").cast(TIME)
        return col.dt.convert_time_zone("UTC").cast(TIME)
    if col.dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if col.dtype.is_numeric():
        nums = col.cast(pl.Float64)
        u = unit or epoch_unit(nums)
        micros = (nums * _UNIT_FACTOR[u]).round(0)
        ok = micros.is_finite() & (micros.abs() < 1e17)
        micros = pl.select(pl.when(ok).then(micros).otherwise(None)).to_series()
        return micros.cast(pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name)
    text = col.cast(pl.String).str.strip_chars()
    if fmt is not None:
        return _to_utc(text.str.to_datetime(fmt, strict=False, time_unit="us")).alias(name)
    numeric = text.cast(pl.Float64, strict=False)
    parsed_numbers = numeric.len() - numeric.null_count()
    given = text.len() - text.null_count()
    # epoch numbers when a unit is given or most values are numbers: a stray word then fails alone,
    # instead of turning the whole column into date strings that every number fails
    if unit is not None or (given and parsed_numbers * 2 >= given):
        return parse_timestamps(numeric.alias(name), unit=unit)
    frame = pl.DataFrame({"t": text})
    parsed = frame.select(
        pl.coalesce(
            [pl.col("t").str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC") for f in _STRING_FORMATS]
        )
    ).to_series()
    return parsed.alias(name)


def _to_utc(s: pl.Series) -> pl.Series:
    if isinstance(s.dtype, pl.Datetime) and s.dtype.time_zone is None:
        return s.dt.replace_time_zone("UTC")
    return s.dt.convert_time_zone("UTC")


# ---- table validators ---------------------------------------------------------------------------


#: Event id columns, kept without surrounding whitespace.
_EVENT_IDS = ("event_id", "user_id", "item_id", "session_id", "request_id")
_EVENT_SCHEMA = pl.Schema(EVENT_SCHEMA)


def validate_events(
    df: pl.DataFrame,
    *,
    file: str,
    log: RejectLog,
    ts_unit: str | None = None,
    ts_format: str | None = None,
    ts_window: bool = False,
) -> pl.DataFrame:
    """Check a raw events frame (canonical column names, any dtypes, `_line`) and return EVENT_SCHEMA rows.

    The rules are those of `aisle.data.checks` (the API's too). `ts_window` also rejects times outside the
    accepted window: on for a store's own exports, off for formats whose "timestamps" count from the epoch.

    Built for the bulk path (tens of millions of rows): event types are normalised and checked through their
    few distinct values, each id column is stripped once (the rules check the stripped text, good rows keep
    it, rejects show the source text), and non-string columns are not turned into text.
    """
    if LINE not in df.columns:
        df = df.with_row_index(LINE, offset=1)
    if "timestamp" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=TIME).alias("timestamp"))
    raw_ts = df["timestamp"]
    already_time = isinstance(raw_ts.dtype, pl.Datetime)
    work = [parse_timestamps(raw_ts, unit=ts_unit, fmt=ts_format).alias("timestamp")]
    if not already_time:  # keep the raw text only where a parse can fail (it names the bad value)
        work.append(raw_ts.alias("_ts_raw"))
    clean = {c: f"_clean_{c}" for c in _EVENT_IDS if c in df.columns}
    work += [_as_text(c, df.schema[c]).str.strip_chars().alias(h) for c, h in clean.items()]
    numeric_value = "value" in df.columns and df.schema["value"].is_numeric()
    if "value" in df.columns and not numeric_value:
        clean["value"] = "_clean_value"
        work.append(_as_text("value", df.schema["value"]).str.strip_chars().alias("_value_text"))
    df = df.with_columns(work)
    if "value" in clean:
        df = df.with_columns(pl.col("_value_text").cast(pl.Float64, strict=False).alias("_clean_value"))
    all_known = False
    if "event_type" in df.columns and df.schema["event_type"] == pl.String:
        df, all_known = _normalise_event_types(df)

    ts_reason = (pl.when(_blank("_ts_raw")).then(pl.lit("missing timestamp"))
                 .otherwise(pl.format("bad timestamp '{}'", pl.col("_ts_raw").cast(pl.String)))
                 if not already_time else pl.lit("missing timestamp"))
    rules: list[Rule] = [("user_id", _blank_clean(clean, "user_id"), pl.lit(checks.missing("user_id")))]
    rules += [(c, checks.has_control(pl.col(h)), pl.lit(checks.control_character(c))) for c, h in clean.items()
              if c in _EVENT_IDS]
    if "event_type" not in df.columns:
        rules.append(("event_type", pl.lit(True), pl.lit("missing event type")))
        itemless = pl.lit(False)  # unreachable: every row is rejected for its event type first
    else:
        event_type = pl.col("event_type")
        if not all_known:  # a full pass only when some value is not an event type
            rules.append(("event_type", ~event_type.is_in(EVENT_TYPES),
                          pl.format(checks.unknown_event_type("{}"), event_type.fill_null(""))))
        if df.schema["event_type"] == pl.String:  # `==` on text is cheaper than is_in, with the same nulls
            itemless = pl.any_horizontal([event_type == t for t in sorted(ITEMLESS_EVENT_TYPES)])
        else:
            itemless = event_type.is_in(list(ITEMLESS_EVENT_TYPES))
    rules += [
        ("item_id", _blank_clean(clean, "item_id") & ~itemless, pl.lit(checks.missing("item_id"))),
        ("timestamp", pl.col("timestamp").is_null(), ts_reason),
    ]
    if ts_window:
        shown = pl.col("_ts_raw").cast(pl.String) if not already_time else pl.col("timestamp").cast(pl.String)
        rules.append(("timestamp", checks.outside_window_expr(pl.col("timestamp")),
                      pl.format(checks.outside_window("{}"), shown)))
    if numeric_value:
        number = pl.col("value") if df.schema["value"] == pl.Float64 else pl.col("value").cast(pl.Float64)
        rules.append(("value", pl.col("value").is_not_null() & ~number.is_finite(),
                      pl.format(checks.not_finite("value", "{}"), pl.col("value"))))
    elif "value" in df.columns:
        text = pl.col("_value_text")
        rules.append(("value", text.is_not_null() & (text != "") & ~pl.col("_clean_value").is_finite().fill_null(False),
                      pl.format(checks.not_finite("value", "{}"), pl.col("value"))))
    hidden = [*clean.values(), "_value_text"]
    bad_mask = reject_broken(df, rules, file=file, table="events", log=log, hidden=hidden) if df.height else None
    # only the columns the table keeps (cleaned ones in place of the source text) are filtered: no copy when
    # every row is good, and no copy of columns about to be dropped when some are not
    good = df.select(pl.col(clean.get(c, c)).alias(c) for c in EVENT_SCHEMA if c in df.columns)
    if good.schema != _EVENT_SCHEMA:  # even identity casts cost a rechunk of every column when chunks differ
        good = conform(good, EVENT_SCHEMA)
    return good if bad_mask is None else good.filter(~bad_mask)


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name) if dtype == pl.String else pl.col(name).cast(pl.String)


def _blank_clean(clean: Mapping[str, str], name: str) -> pl.Expr:
    """`_blank(name)` on the stripped copy of the column (all rows blank when the frame lacks it)."""
    if name not in clean:
        return pl.lit(True)
    return pl.col(clean[name]).is_null() | (pl.col(clean[name]) == "")


def _normalise_event_types(df: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """Strip and lower-case a text `event_type` column through its distinct values (a handful, whatever the
    row count); nothing is rewritten when they are all clean. Also says whether every non-null value is an
    event type.
    """
    distinct = df["event_type"].unique()
    normal = distinct.str.strip_chars().str.to_lowercase()
    if (distinct != normal).any():  # mapping every distinct value (unchanged ones too) is the faster replace
        df = df.with_columns(pl.col("event_type").replace(distinct, normal))
    return df, bool(normal.is_in(EVENT_TYPES).all())


#: Text an `available` flag may hold (any case, surrounding spaces ignored).
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")


def validate_items(df: pl.DataFrame, *, file: str, log: RejectLog) -> pl.DataFrame:
    """Check a raw items frame and return ITEM_SCHEMA rows (later duplicates of an id win, as an upsert).

    `price` may be a number or text ("$3.50"); text that is not a number is rejected naming it, as is a negative
    price. `available` may be a boolean, a number (non-zero is true) or text: true/false, 1/0, yes/no, y/n, t/f.
    """
    if LINE not in df.columns:
        df = df.with_row_index(LINE, offset=1)
    rules: list[Rule] = [("item_id", _blank("item_id"), pl.lit(checks.missing("item_id"))),
                         ("item_id", checks.has_control(_text("item_id")), pl.lit(checks.control_character("item_id")))]
    if "price" in df.columns:
        # keep the raw text beside the parsed number: "free" must be rejected, not silently become null
        df = df.with_columns(pl.col("price").cast(pl.String).str.strip_chars().alias("_price_raw"))
        raw = pl.col("_price_raw")
        num = raw.str.replace_all(r"^\$", "").cast(pl.Float64, strict=False)
        given = raw.is_not_null() & (raw != "")
        rules += [
            ("price", given & (num.is_null() | ~num.is_finite()), pl.format(checks.not_a_number("price", "{}"), raw)),
            ("price", given & (num < 0), pl.format(checks.negative("price", "{}"), raw)),
        ]
        df = df.with_columns(num.alias("price"))
    if "available" in df.columns and df.schema["available"].is_numeric():  # a 1/0 flag: any non-zero is true
        df = df.with_columns(pl.col("available") != 0)
    elif "available" in df.columns and df.schema["available"] != pl.Boolean:
        raw_av = pl.col("available").cast(pl.String).str.strip_chars().str.to_lowercase()
        truth = pl.when(raw_av.is_in(_TRUE)).then(True).when(raw_av.is_in(_FALSE)).then(False).otherwise(None)
        df = df.with_columns(truth.alias("_available"), pl.col("available").cast(pl.String).alias("_available_raw"))
        rules.append(("available", pl.col("_available").is_null() & ~_blank("_available_raw"),
                      pl.format("available '{}' is not true/false", pl.col("_available_raw"))))
    if "attributes" in df.columns and df.schema["attributes"] == pl.String:
        ok = pl.col("attributes").map_elements(_is_json_object, return_dtype=pl.Boolean)
        rules.append(("attributes", pl.col("attributes").is_not_null() & ~ok,
                      pl.lit("attributes is not a JSON object")))
    if "created_at" in df.columns:
        raw_ts = df["created_at"]
        df = df.with_columns(parse_timestamps(raw_ts).alias("created_at"), raw_ts.cast(pl.String).alias("_ts_raw"))
        rules.append(("created_at", pl.col("created_at").is_null() & ~_blank("_ts_raw"),
                      pl.format("bad timestamp '{}'", pl.col("_ts_raw"))))
    good = apply_rules(df, rules, file=file, table="items", log=log)
    if "_available" in good.columns:
        good = good.with_columns(pl.col("_available").alias("available"))
    good = good.drop("_ts_raw", "_price_raw", "_available", "_available_raw", strict=False)
    good = good.with_columns(pl.col("item_id").cast(pl.String).str.strip_chars())
    defaults = {"title": "", "description": "", "currency": "USD", "available": True, "attributes": "{}"}
    out = conform(good, ITEM_SCHEMA)
    out = out.with_columns([pl.col(c).fill_null(v) for c, v in defaults.items()])
    return out.with_columns(pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String))))


def validate_users(df: pl.DataFrame, *, file: str, log: RejectLog) -> pl.DataFrame:
    if LINE not in df.columns:
        df = df.with_row_index(LINE, offset=1)
    rules: list[Rule] = [("user_id", _blank("user_id"), pl.lit(checks.missing("user_id"))),
                         ("user_id", checks.has_control(_text("user_id")), pl.lit(checks.control_character("user_id")))]
    good = apply_rules(df, rules, file=file, table="users", log=log)
    out = conform(good.with_columns(pl.col("user_id").cast(pl.String).str.strip_chars()), USER_SCHEMA)
    return out.with_columns(pl.col("attributes").fill_null("{}"))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, TypeError):
        return False


def attributes_json(row_values: Mapping[str, object]) -> str:
    """Serialize an attribute mapping the one way the store keeps it (sorted keys, no nulls)."""
    return json.dumps({k: v for k, v in row_values.items() if v is not None}, sort_keys=True, ensure_ascii=False)

