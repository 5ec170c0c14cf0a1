"""Careful text reading for every text reader: encodings, gzip, broken lines, exact line numbers.

Polars' CSV reader is fast but silently pads short rows and stops on a bad byte; a store must instead
say "file.csv:1203: truncated row". So text formats go through Python's csv module here, line by line,
with each undecodable line, short/long row or bad JSON line turned into a `Reject`. The cost is about
a second per million rows, paid once at ingest; Parquet skips this path entirely. Header-less files with
other separators (GroupLens' `::`, whitespace-separated pairs) go through `read_split_lines`, which decodes
lines in Python and splits them in Polars.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import polars as pl

from aisle.data.validation import LINE, Reject, RejectLog, Rule, apply_rules

csv.field_size_limit(1 << 28)


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently un-gzipping `.gz`."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_lines(path: Path, *, encoding: str, log: RejectLog, table: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, decoded text without newline); lines that do not decode become rejects.

    A UTF-8 byte order mark at the start of the file is dropped (spreadsheet exports write one), so it cannot
    end up in the first column's name.
    """
    for no, text, _end in _iter_lines_ends(path, encoding=encoding, log=log, table=table):
        yield no, text


def _iter_lines_ends(path: Path, *, encoding: str, log: RejectLog, table: str) -> Iterator[tuple[int, str, str]]:
    """(line number, text without its line ending, the ending) for each line that decodes."""
    with open_binary(path) as fh:
        for no, raw in enumerate(fh, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                log.seen(table, 1)
                bad = raw[exc.start : exc.start + 1]
                log.add(Reject(str(path), no, table, "(line)",
                               f"not valid {encoding}: byte 0x{bad.hex()} at column {exc.start + 1}"
                               " (set the file's encoding, e.g. ?encoding=latin-1)",
                               raw.decode(encoding, errors="replace").rstrip("\r\n")))
                continue
            if no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            body = text.rstrip("\r\n")
            yield no, body, text[len(body):]


#: The most physical lines one quoted field may span; a quote still open after them is a reject (an unclosed
#: quote), so one stray quote cannot swallow the rest of a file.
MAX_RECORD_LINES = 100


def quote_open(text: str, sep: str, inside: bool = False) -> bool:
    """Whether a quoted field is still open at the end of `text` (RFC 4180: a field that starts with `"` is
    quoted, `""` inside it is a quote; a quote inside an unquoted field is a plain character, as the csv module
    reads it). `inside` says the text continues a quoted field from the line before.
    """
    if not inside and '"' not in text:
        return False
    start = not inside  # at the start of a field
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if inside:
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 2
                    continue
                inside = False
        elif c == sep:
            start = True
            i += 1
            continue
        elif c == '"' and start:
            inside = True
        start = False
        i += 1
    return inside


def _one_line(text: str, sep: str, quoting: bool) -> list[str] | None:
    """The fields of a line that is a whole, well-formed record on its own, else None (a quote left open, or
    quoting the strict parser refuses: the careful path in `read_delimited` takes it)."""
    if not quoting or '"' not in text:
        return text.split(sep)  # what csv would give, without a reader
    try:
        return next(csv.reader([text], delimiter=sep, strict=True))
    except csv.Error:
        return None


def read_delimited(
    path: Path,
    *,
    table: str,
    log: RejectLog,
    sep: str = ",",
    encoding: str = "utf-8",
    header: bool | list[str] = True,
    quoting: bool = True,
) -> pl.DataFrame:
    """Read a delimited text file into all-string columns plus `_line`, losing no line.

    `header=True` takes names from the first line; a list names the columns of a header-less file.
    With `quoting` the file is RFC 4180 CSV: a quoted field may hold separators, doubled quotes and line breaks
    (kept as they are), and a record's `_line` is the line it starts on. Every non-blank physical line is
    either part of a loaded record or rejected under its own number: a quote that does not close within
    `MAX_RECORD_LINES` lines, or whose closing makes a record of the wrong width, rejects only the line it opened
    on, and reading goes on from the next line. Rows with the wrong number of fields (a truncated last line, a
    stray separator) become rejects; blank lines are ignored, not counted.
    """
    lines = _iter_lines_ends(path, encoding=encoding, log=log, table=table)
    names: list[str]
    if header is True:
        first = next(((n, t) for n, t, _e in lines if t.strip()), None)
        if first is None:
            return pl.DataFrame(schema={LINE: pl.Int64})
        names = [c.strip() for c in next(csv.reader([first[1]], delimiter=sep))]
    elif header is False:
        raise ValueError("header=False needs column names: pass header=[...]")
    else:
        names = list(header)
    columns: list[list[str | None]] = [[] for _ in names]
    line_nos: list[int] = []
    width = len(names)
    style = csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
    pending: deque[tuple[int, str, str]] = deque()

    def reject(no: int, fld: str, reason: str, raw: str) -> None:
        log.seen(table, 1)
        log.add(Reject(str(path), no, table, fld, reason, raw))

    while True:
        if not pending:
            nxt = next(lines, None)
            if nxt is None:
                break
            pending.append(nxt)
        no, text, _end = pending[0]
        if not text.strip():
            pending.popleft()
            continue
        row, span = _one_line(text, sep, quoting), 1
        if row is None:  # a quote left open, or quoting the strict parser refuses: the careful path
            still_open = quote_open(text, sep)
            while still_open and span < MAX_RECORD_LINES:
                if len(pending) <= span:
                    nxt = next(lines, None)
                    if nxt is None:
                        break
                    pending.append(nxt)
                still_open = quote_open(pending[span][1], sep, inside=True)
                span += 1
            if still_open:
                reject(no, "(line)", "unclosed quote: a quoted field opens on this line and never closes", text)
                pending.popleft()
                continue
            record = "".join(t + (e if k < span - 1 else "") for k, (_n, t, e) in enumerate(list(pending)[:span]))
            try:
                row = next(csv.reader([record], delimiter=sep, quoting=style, strict=False))
            except csv.Error as exc:
                reject(no, "(line)", f"malformed row: {exc}", text)
                pending.popleft()
                continue
            if len(row) != width and span > 1:
                reject(no, "(line)", f"unclosed quote: closing the quoted field that opens on this line at line "
                       f"{pending[span - 1][0]} gives {len(row)} fields, expected {width}", text)
                pending.popleft()  # only this line: the next one is read again as a record of its own
                continue
        if len(row) != width:
            what = "truncated row" if len(row) < width else "too many fields"
            reject(no, names[min(len(row), width - 1)], f"{what}: expected {width} fields, got {len(row)}", text)
            pending.popleft()
            continue
        log.seen(table, 1)
        for _ in range(span):
            pending.popleft()
        line_nos.append(no)
        for col, value in zip(columns, row, strict=True):
            col.append(value if value != "" else None)
    data: dict[str, Any] = {
        name: pl.Series(name, col, dtype=pl.String) for name, col in zip(names, columns, strict=True)
    }
    data[LINE] = pl.Series(LINE, line_nos, dtype=pl.Int64)
    return pl.DataFrame(data)


def read_lines(path: Path, *, table: str, log: RejectLog, encoding: str = "utf-8",
               keep_blank: bool = False) -> pl.DataFrame:
    """(`_line`, `text`) for each line that decodes; a line that does not is rejected (and counted) as in
    `iter_lines`. Blank lines are left out unless `keep_blank` (where a line's number means something, e.g. the
    n-th line is user n). Counts no rows: how many rows a line holds is the caller's to say.
    """
    nos: list[int] = []
    texts: list[str] = []
    for no, text in iter_lines(path, encoding=encoding, log=log, table=table):
        if keep_blank or text.strip():
            nos.append(no)
            texts.append(text)
    return pl.DataFrame({LINE: pl.Series(nos, dtype=pl.Int64), "text": pl.Series(texts, dtype=pl.String)})


def read_split_lines(
    path: Path,
    *,
    names: Sequence[str],
    table: str,
    log: RejectLog,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pl.DataFrame:
    """Read a header-less file of `len(names)` fields per line into string columns `names` plus `_line`.

    `sep` is a literal separator of any length (e.g. GroupLens' `::`, which the csv module cannot take), or
    None for runs of whitespace (`user item` pairs). No quoting. Python only decodes lines; counting and
    splitting fields is done by Polars, column-wise. As in `read_delimited`: blank lines are ignored, every other
    line is one row of `table`, a line that does not decode or has the wrong number of fields is rejected with
    its line number (naming the first missing field, or the last field when there are too many), and a field
    that is blank after stripping is null (other fields keep their text as it is).
    """
    if not names:
        raise ValueError("read_split_lines needs at least one column name")
    df = read_lines(path, table=table, log=log, encoding=encoding).rename({"text": "line"})
    log.seen(table, df.height)
    line = pl.col("line")
    if sep is None:
        n, fields = line.str.count_matches(r"\S+"), line.str.extract_all(r"\S+")
    elif sep:
        n, fields = line.str.count_matches(sep, literal=True) + 1, line.str.split(sep)
    else:
        raise ValueError("sep='' splits nothing: give a separator, or None for whitespace")
    width = len(names)
    rules: list[Rule] = [
        (names[k], n == k, pl.lit(f"truncated row: expected {width} fields, got {k}")) for k in range(width)
    ]
    rules.append((names[-1], n > width, pl.format("too many fields: expected {} fields, got {}", pl.lit(width), n)))
    good = apply_rules(df, rules, file=str(path), table=table, log=log)
    return good.select(*[_text_or_null(fields.list.get(i)).alias(name) for i, name in enumerate(names)], LINE)


def _text_or_null(value: pl.Expr) -> pl.Expr:
    return pl.when(value.str.strip_chars() != "").then(value)


def iter_jsonl(path: Path, *, table: str, log: RejectLog, encoding: str = "utf-8") -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) from JSON lines; bad JSON (e.g. a truncated last line) is rejected.

    Counts one row per non-blank line; callers that explode a line into several records adjust totals.
    """
    for no, text in iter_lines(path, encoding=encoding, log=log, table=table):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            log.seen(table, 1)
            cut = exc.msg.startswith("Unterminated string") or (
                exc.msg.startswith("Expecting") and exc.pos >= len(text.rstrip()) - 1)
            reason = "truncated JSON line" if cut else f"invalid JSON: {exc.msg} (column {exc.colno})"
            log.add(Reject(str(path), no, table, "(line)", reason, text[:500]))
            continue
        yield no, obj


def sniff_text(path: Path, n: int = 4096) -> str:
    """First bytes of a file as text (for format detection and error messages)."""
    with open_binary(path) as fh:
        return io.TextIOWrapper(io.BytesIO(fh.read(n)), encoding="utf-8", errors="replace").read()
