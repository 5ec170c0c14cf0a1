"""A store's own export (`csv`, `parquet`, `jsonl`), mapped onto the data model by the data spec's options.

One file (or a folder of files with that suffix, read in name order) holds one table:

    csv:orders.csv?user_id=customer&item_id=sku&timestamp=ts&event_type=action&type.pageview=view&type.order=purchase
    parquet:clicks.parquet?user_id=uid&item_id=pid&timestamp=t&ts_unit=ms&event_type=@click
    jsonl:catalog.jsonl?table=items&item_id=sku&title=name&categories=path&category_sep=/

Options (every other key is an error, so a typo cannot silently map nothing):

- `table=events|items|users` (default `events`): which table the file holds.
- `FIELD=COLUMN`: the source column of a canonical field of that table (`aisle.types` *_SCHEMA). A field that is
  not mapped takes the same-named column when the file has one, so a file already in Aisle's names needs no
  mapping. `FIELD=@VALUE` gives the field one constant value for every row, e.g. `event_type=@purchase` for an
  order log or `currency=@EUR`.
- `type.SOURCE=TYPE`: maps a source event-type value onto an `aisle.types.EventType`, e.g. `type.pageview=view`.
  Matching ignores case and surrounding spaces; values without a mapping must already be Aisle types, and any
  other value is rejected as an unknown event type (never guessed).
- `ts_unit=s|ms|us` for epoch numbers (default: guessed from their magnitude), `ts_format=STRFTIME` for date
  strings (default: the common ISO forms). Both apply to the events' `timestamp`; items' `created_at` is detected.
- `sep=` (CSV separator, default `,`; `tab` or `\\t` for tabs), `encoding=` (text formats, default utf-8),
  `columns=a,b,c` (names for a CSV without a header line).
- `category_sep=` (items, default `>`): a `categories` value is either a JSON list (`["Garden", "Tools"]`) or a
  path split on this separator (`Garden > Tools`); a Parquet list column is taken as it is.

Items and users have a free-form `attributes` JSON object: every source column that no field maps goes into
it (keys in column order, null/empty values left out), merged into a mapped `attributes` column when there is
one, so a store's extra columns (color, size, segment...) are kept, not dropped. Events have no free-form
field: their unmapped columns are ignored. `available` accepts true/false, 1/0, yes/no.

Rows are checked by `aisle.data.validation`; a reject's line is the text line for CSV (via
`textio.read_delimited`, so a truncated or undecodable line is a reject, not a crash) and JSON lines (via
`textio.iter_jsonl`), and the 1-based row number for Parquet. Parquet is the bulk path: it is scanned
column-wise with only the needed columns and never touched row by row in Python.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import iter_jsonl, open_binary, read_delimited
from aisle.data.validation import (
    LINE,
    Reject,
    RejectLog,
    Rule,
    apply_rules,
    validate_events,
    validate_items,
    validate_users,
)
from aisle.types import EVENT_SCHEMA, EVENT_TYPES, ITEM_SCHEMA, USER_SCHEMA

FIELDS: dict[str, tuple[str, ...]] = {
    "events": tuple(EVENT_SCHEMA),
    "items": tuple(ITEM_SCHEMA),
    "users": tuple(USER_SCHEMA),
}
READ_OPTIONS = frozenset({"table", "sep", "encoding", "ts_unit", "ts_format", "category_sep", "columns"})
_ID_FIELDS = frozenset({"event_id", "user_id", "item_id", "session_id", "request_id", "query"})
_EXTRA = "_extra"  # inner JSON text ('"k":v,...') of the unmapped columns, before it joins `attributes`


# ---- the mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What the options say: which table, which source column feeds which field, and how to read the file."""

    table: str = "events"
    columns: dict[str, str] = field(default_factory=dict)  # canonical field -> source column, as given
    constants: dict[str, str] = field(default_factory=dict)  # canonical field -> constant (FIELD=@VALUE)
    type_map: dict[str, str] = field(default_factory=dict)  # lower-case source event type -> Aisle type
    sep: str = ","
    encoding: str = "utf-8"
    ts_unit: str | None = None
    ts_format: str | None = None
    category_sep: str = ">"
    header: list[str] | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> Plan:
        table = options.get("table", "events").strip().lower()
        if table not in FIELDS:
            raise ValueError(f"table={table!r}: expected one of {', '.join(FIELDS)}")
        fields = FIELDS[table]
        columns: dict[str, str] = {}
        constants: dict[str, str] = {}
        type_map: dict[str, str] = {}
        for key, value in options.items():
            if key in READ_OPTIONS:
                continue
            if key.startswith("type.") and table == "events":
                target = value.strip().lower()
                if target not in EVENT_TYPES:
                    raise ValueError(f"{key}={value}: {target!r} is not an event type ({', '.join(EVENT_TYPES)})")
                type_map[key[5:].strip().lower()] = target
            elif key in fields:
                if value.startswith("@"):
                    constants[key] = value[1:]
                elif value.strip():
                    columns[key] = value.strip()
                else:
                    raise ValueError(f"option {key}= names no column")
            else:
                known = sorted(READ_OPTIONS) + list(fields) + (["type.VALUE"] if table == "events" else [])
                raise ValueError(f"unknown option {key!r} for table {table!r}; known: {', '.join(known)}")
        if "event_type" in constants:
            constants["event_type"] = constants["event_type"].strip().lower()
            if constants["event_type"] not in EVENT_TYPES:
                raise ValueError(f"event_type=@{constants['event_type']}: not one of {', '.join(EVENT_TYPES)}")
            if type_map:
                raise ValueError("type.* mappings need an event_type column, not a constant event_type=@...")
        ts_unit = options.get("ts_unit") or None
        if ts_unit is not None and ts_unit not in ("s", "ms", "us"):
            raise ValueError(f"ts_unit={ts_unit!r}: expected s, ms or us")
        sep = options.get("sep", ",")
        sep = "\t" if sep in ("tab", "\\t") else sep
        if len(sep) != 1:
            raise ValueError(f"sep={sep!r}: a separator is one character (use sep=tab for tabs)")
        header = [c.strip() for c in options["columns"].split(",")] if options.get("columns") else None
        return cls(table, columns, constants, type_map, sep, options.get("encoding") or "utf-8", ts_unit,
                   options.get("ts_format") or None, options.get("category_sep") or ">", header)

    def used_sources(self) -> set[str]:
        """Source column names a field may read (explicit mappings, and canonical names not mapped elsewhere)."""
        implicit = {f for f in FIELDS[self.table] if f not in self.columns and f not in self.constants}
        return set(self.columns.values()) | implicit

    def resolve(self, available: Sequence[str], file: str) -> tuple[dict[str, str], list[str]]:
        """(field -> source column for each field the file provides, unmapped columns in file order)."""
        mapping: dict[str, str] = {}
        for f in FIELDS[self.table]:
            if f in self.constants:
                continue
            src = self.columns.get(f, f)
            if src in available:
                mapping[f] = src
            elif f in self.columns:
                raise ValueError(f"{file}: no column {src!r} (mapped to {f}); columns: {', '.join(available)}")
        required = {"events": ["user_id", "event_type", "timestamp", "item_id"], "items": ["item_id"],
                    "users": ["user_id"]}[self.table]
        if self.table == "events" and ("query" in mapping or self.constants.get("event_type") == "search"):
            required.remove("item_id")  # searches name a query instead of an item
        for f in required:
            if f not in mapping and f not in self.constants:
                hint = " or a constant (event_type=@purchase)" if f == "event_type" else ""
                raise ValueError(f"{file}: no {f!r} column; map one ({f}=COLUMN){hint}; "
                                 f"columns: {', '.join(available)}")
        used = set(mapping.values())
        return mapping, [c for c in available if c not in used and c != LINE]


# ---- JSON helpers (also used by the other readers) ------------------------------------------------


def json_fields(schema: Mapping[str, pl.DataType], columns: Iterable[str]) -> pl.Expr:
    """Inner JSON object text (`"a":1,"b":["x"]`) of `columns`, leaving out nulls and empty lists; null if none.

    Column-wise (Polars' JSON encoder), so it costs no Python per row.
    """
    parts = []
    for c in columns:
        present = pl.col(c).is_not_null()
        if isinstance(schema[c], pl.List):
            present = present & (pl.col(c).list.len() > 0)
        elif schema[c] == pl.String:
            present = present & (pl.col(c) != "")
        encoded = pl.struct(pl.col(c)).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}")
        parts.append(pl.when(present).then(encoded))
    if not parts:
        return pl.lit(None, dtype=pl.String)
    inner = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.when(inner != "").then(inner)


def merge_attributes(base: pl.Expr | None, inner: pl.Expr) -> pl.Expr:
    """`base` (JSON object text or null) with the `inner` key/value text appended; null when both are empty.

    A `base` that is not a JSON object stays broken, so validation rejects it with its line.
    """
    wrapped = pl.concat_str([pl.lit("{"), inner, pl.lit("}")])
    if base is None:
        return pl.when(inner.is_not_null()).then(wrapped)
    text = base.cast(pl.String).str.strip_chars()
    empty = text.is_null() | (text == "") | text.str.contains(r"^\{\s*\}$")
    joined = pl.concat_str([text.str.strip_suffix("}").str.strip_chars_end(), pl.lit(","), inner, pl.lit("}")])
    return pl.when(inner.is_null()).then(pl.when(text != "").then(text)).when(empty).then(wrapped).otherwise(joined)


def map_values(col: pl.Series, fn: Callable[[str], str], limit: int = 100_000) -> pl.Series:
    """`fn` applied to a text column through its distinct values: millions of rows, a handful of Python calls."""
    col = col.cast(pl.String)
    distinct = col.drop_nulls().unique()
    if distinct.len() > limit:  # not a code column after all: one Python call per row
        return col.map_elements(fn, return_dtype=pl.String)
    changed = {v: fn(v) for v in distinct.to_list()}
    changed = {k: v for k, v in changed.items() if v != k}
    return col.replace(changed) if changed else col


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Ids as text, converted once here rather than once per check downstream."""
    return expr if dtype == pl.String else expr.cast(pl.String)


# ---- readers --------------------------------------------------------------------------------------


def read_csv(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    plan = Plan.from_options(options)
    parts = []
    for file in _files(path, (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        header: bool | list[str] = plan.header or True
        early = plan.header or _peek_header(file, plan.sep, plan.encoding)
        if early is not None:  # check the mapping before reading a large file
            plan.resolve(early, str(file))
        raw = read_delimited(file, table=plan.table, log=log, sep=plan.sep, encoding=plan.encoding, header=header)
        if raw.columns == [LINE]:  # an empty file: no header, no rows
            continue
        mapping, extras = plan.resolve([c for c in raw.columns if c != LINE], str(file))
        parts.append(_finish(raw, plan, mapping, extras, None, str(file), log))
    return _dataset(path, plan, parts, log)


def read_parquet(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    plan = Plan.from_options(options)
    parts = []
    for file in _files(path, (".parquet", ".pq")):
        schema = pl.read_parquet_schema(file)
        mapping, extras = plan.resolve(list(schema), str(file))
        keep = list(dict.fromkeys([*mapping.values(), *(extras if plan.table != "events" else [])]))
        raw = pl.scan_parquet(file).with_row_index(LINE, offset=1).select(LINE, *keep).collect()
        log.seen(plan.table, raw.height)
        parts.append(_finish(raw, plan, mapping, extras, None, str(file), log))
    return _dataset(path, plan, parts, log)


def read_jsonl(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    plan = Plan.from_options(options)
    used = plan.used_sources()
    parts = []
    for file in _files(path, (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        columns: dict[str, list[str | None]] = {}
        seen_keys: dict[str, None] = {}
        extra: list[str | None] = []
        lines: list[int] = []
        for no, obj in iter_jsonl(file, table=plan.table, log=log, encoding=plan.encoding):
            log.seen(plan.table, 1)
            if not isinstance(obj, dict):
                log.add(Reject(str(file), no, plan.table, "(line)", f"not a JSON object but {type(obj).__name__}",
                               json.dumps(obj, ensure_ascii=False)[:500]))
                continue
            n = len(lines)
            for key, value in obj.items():
                seen_keys.setdefault(key, None)
                if key in used:
                    columns.setdefault(key, [None] * n).append(_text(value))
            for col in columns.values():
                if len(col) == n:  # a key this line does not have
                    col.append(None)
            if plan.table != "events":
                rest = {k: v for k, v in obj.items() if k not in used and v is not None and v != [] and v != ""}
                extra.append(json.dumps(rest, ensure_ascii=False, separators=(",", ":"))[1:-1] if rest else None)
            lines.append(no)
        if not lines:
            continue
        mapping, _ = plan.resolve(list(seen_keys), str(file))
        raw = pl.DataFrame({**{k: pl.Series(k, v, dtype=pl.String) for k, v in columns.items()},
                            LINE: pl.Series(LINE, lines, dtype=pl.Int64)})
        if plan.table != "events":
            raw = raw.with_columns(pl.Series(_EXTRA, extra, dtype=pl.String))
        parts.append(_finish(raw, plan, mapping, [], _EXTRA if plan.table != "events" else None, str(file), log))
    return _dataset(path, plan, parts, log)


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    """Pick the reader from the file name (`.parquet`, `.jsonl`/`.json`, anything else as CSV)."""
    probe = next(iter(sorted(path.iterdir())), path) if path.is_dir() else path
    name = probe.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return read_parquet(path, options, log)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return read_jsonl(path, options, log)
    return read_csv(path, options, log)


# ---- shared steps ---------------------------------------------------------------------------------


def _finish(raw: pl.DataFrame, plan: Plan, mapping: dict[str, str], extras: list[str], extra_col: str | None,
            file: str, log: RejectLog) -> pl.DataFrame:
    """Source columns -> canonical columns -> validated table, with every reject in line order."""
    exprs: list[pl.Expr] = [pl.col(LINE)]
    exprs += [_as_text(pl.col(src), raw.schema[src]).alias(f) if f in _ID_FIELDS else pl.col(src).alias(f)
              for f, src in mapping.items() if f != "attributes"]
    exprs += [pl.lit(v, dtype=pl.String).alias(f) for f, v in plan.constants.items() if f != "attributes"]
    if plan.table != "events":
        inner = pl.col(extra_col) if extra_col else json_fields(raw.schema, extras)
        base = pl.col(mapping["attributes"]) if "attributes" in mapping else (
            pl.lit(plan.constants["attributes"], dtype=pl.String) if "attributes" in plan.constants else None)
        exprs.append(merge_attributes(base, inner).alias("attributes"))
    df = raw.select(exprs)
    staged = RejectLog(on_error="skip")  # collect every reject first, so `fail` reports the earliest line
    if plan.table == "events":
        if "event_type" in df.columns and plan.type_map:
            df = df.with_columns(map_values(df["event_type"], lambda v: plan.type_map.get(v.strip().lower(), v)))
        out = validate_events(df, file=file, log=staged, ts_unit=plan.ts_unit, ts_format=plan.ts_format,
                              ts_window=True)
    elif plan.table == "items":
        df, rules = _categories(df, plan.category_sep)
        df = apply_rules(df, rules, file=file, table="items", log=staged).drop("_raw_categories", strict=False)
        out = validate_items(df, file=file, log=staged)  # prices and `available` are parsed and checked there
    else:
        out = validate_users(df, file=file, log=staged)
    log.extend(staged.rejects)
    return out


def _categories(df: pl.DataFrame, category_sep: str) -> tuple[pl.DataFrame, list[Rule]]:
    """Parse `categories` (JSON list or delimited path) column-wise, with the rule that rejects a bad JSON list."""
    rules: list[Rule] = []
    if "categories" in df.columns and not isinstance(df.schema["categories"], pl.List):
        text = df["categories"].cast(pl.String).str.strip_chars()
        is_json = text.str.starts_with("[").fill_null(False)
        parsed = text.str.split(category_sep)
        if is_json.any():
            decoded = _json_lists(pl.select(pl.when(is_json).then(text)).to_series())
            parsed = pl.select(pl.when(is_json).then(decoded).otherwise(parsed)).to_series()
        df = df.with_columns(parsed.alias("categories"), text.alias("_raw_categories"))
        rules.append(("categories", pl.col("categories").is_null() & pl.col("_raw_categories").str.starts_with("["),
                      pl.format("categories '{}' is not a JSON list of names", pl.col("_raw_categories"))))
    if "categories" in df.columns:
        clean = pl.col("categories").cast(pl.List(pl.String)).list.eval(pl.element().str.strip_chars())
        df = df.with_columns(clean.list.eval(pl.element().filter(pl.element().is_not_null() & (pl.element() != ""))))
    return df, rules


def _json_lists(text: pl.Series) -> pl.Series:
    """JSON list texts -> List(String); column-wise, falling back to one value at a time to find the bad ones."""
    try:
        return text.str.json_decode(pl.List(pl.String))
    except (pl.exceptions.PolarsError, ValueError):
        return text.map_elements(_json_list, return_dtype=pl.List(pl.String))


def _json_list(text: str) -> list[str] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        return None
    return [str(v) for v in value]


def _text(value: Any) -> str | None:
    """A JSON value as the text a CSV would hold (lists and objects as JSON)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise ValueError(f"{path}: no {' / '.join(suffixes)} files in this folder")
    return files


def _peek_header(path: Path, sep: str, encoding: str) -> list[str] | None:
    """Column names from the first non-blank line, or None if it cannot be read (read_delimited reports why)."""
    try:
        with open_binary(path) as fh:
            for raw in fh:
                text = raw.decode(encoding).rstrip("\r\n").removeprefix("\ufeff")
                if text.strip():
                    return [c.strip() for c in next(csv.reader([text], delimiter=sep))]
    except (UnicodeDecodeError, csv.Error, OSError):
        return None
    return None


def _dataset(path: Path, plan: Plan, parts: list[pl.DataFrame], log: RejectLog) -> Dataset:
    data = Dataset(name=path.name.split(".")[0] or path.name, log=log)
    if parts:
        setattr(data, plan.table, pl.concat(parts) if len(parts) > 1 else parts[0])
    return data
