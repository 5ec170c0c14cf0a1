"""What every reader returns, and how a data spec (`FORMAT:PATH?key=value`) is parsed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import polars as pl

from aisle.data.validation import RejectLog
from aisle.types import EVENT_SCHEMA, ITEM_SCHEMA, USER_SCHEMA, empty_frame

TABLES = ("events", "items", "users")


@dataclass
class Dataset:
    """The validated content of one source.

    `events`, `items` and `users` have the canonical schemas of `aisle.types`; `items` and `users` hold
    only rows the source really has (a log-only format has no catalog: its items are the ids in its
    events, which the store and stats count from there). `extras` holds tables a
    format has beyond those (e.g. Home Depot relevance judgments, a benchmark's fixed split), each
    documented by its reader: either a marking of rows that are also in `events` (ml1m-sasrec's
    "split") or rows kept apart from them (multibehavior's held-out "valid"/"test" pairs, Home Depot's
    "judgments"); the reader's docstring says which. `log` holds the rejects and the row totals per
    table, extras included (a reader calls `log.seen(table, n)` for every row it reads, good or bad).
    """

    name: str
    events: pl.DataFrame = field(default_factory=lambda: empty_frame(EVENT_SCHEMA))
    items: pl.DataFrame = field(default_factory=lambda: empty_frame(ITEM_SCHEMA))
    users: pl.DataFrame = field(default_factory=lambda: empty_frame(USER_SCHEMA))
    extras: dict[str, pl.DataFrame] = field(default_factory=dict)
    log: RejectLog = field(default_factory=RejectLog)

    def loaded(self, table: str) -> int:
        frame = self.extras[table] if table in self.extras else getattr(self, table)
        return int(frame.height)

    def accounting(self) -> dict[str, dict[str, int]]:
        """Per table: rows seen in the source, loaded and rejected. loaded + rejected = total, always."""
        out = {}
        for t in (*TABLES, *self.extras):
            total, rejected, loaded = self.log.totals.get(t, 0), self.log.rejected(t), self.loaded(t)
            out[t] = {"total": total, "loaded": loaded, "rejected": rejected}
        return out

    def check_accounting(self) -> None:
        """Fail loudly if a reader dropped rows without rejecting them: nothing may be silently lost."""
        for t, c in self.accounting().items():
            if c["loaded"] + c["rejected"] != c["total"]:
                raise AssertionError(f"{self.name}: {t}: loaded {c['loaded']} + rejected {c['rejected']} "
                                     f"!= total {c['total']}")


@dataclass(frozen=True, slots=True)
class DataSpec:
    """`FORMAT:PATH[?key=value&...]`, e.g. `s3rec:../shared/data/amazon-s3rec/Beauty.txt` or
    `csv:events.csv?user_id=customer&item_id=sku&timestamp=ts`; or `FORMAT:URL` where the source is a server,
    e.g. `store:postgresql://user@host/shop` (the URL is kept whole, its own `?...` included, in `url`; `path`
    then only names it)."""

    format: str
    path: Path
    options: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        fmt, sep, rest = text.partition(":")
        if not sep or not fmt or not rest:
            raise ValueError(f"data spec {text!r} is not FORMAT:PATH (e.g. s3rec:data/Beauty.txt)")
        if _URL.match(rest):
            return cls(fmt.strip().lower(), Path(urlsplit(rest).path.lstrip("/") or "postgres"), {}, rest)
        path, _, query = rest.partition("?")
        return cls(fmt.strip().lower(), Path(path), dict(parse_qsl(query, keep_blank_values=True)))

    def __str__(self) -> str:
        if self.url is not None:  # for messages and reports: never the password
            parts = urlsplit(self.url)
            if parts.password is not None:
                return f"{self.format}:" + urlunsplit(parts._replace(
                    netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
            return f"{self.format}:{self.url}"
        opts = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.format}:{self.path}" + (f"?{opts}" if opts else "")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


Reader = Callable[[Path, Mapping[str, str], RejectLog], Dataset]
"""A reader takes the path, the spec's options and the reject log, and returns a validated Dataset."""

