"""Readers for real data formats, one module each; `READERS` maps a spec's FORMAT to its reader.

Every reader has the signature of `base.Reader`: (path, options, reject log) -> validated `Dataset`.
Modules are imported on first use so that `aisle --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from pathlib import Path

from aisle.data.readers.base import Dataset, DataSpec, Reader
from aisle.data.validation import DataError, OnError, RejectLog

_MODULES: dict[str, str] = {
    "aisle": "native",  # Aisle's own Parquet folder (items/users/events.parquet), e.g. `aisle generate`
    "store": "store",  # an Aisle store: a DuckDB file or a postgresql:// URL (`aisle ingest --db`, `serve --store`)
    "s3rec": "s3rec",
    "movielens": "movielens",
    "ml1m-sasrec": "ml1m_sasrec",
    "amazon": "amazon",
    "multibehavior": "multibehavior",
    "rees46": "rees46",
    "otto": "otto",
    "diginetica": "diginetica",
    "homedepot": "homedepot",
    "csv": "generic",
    "parquet": "generic",
    "jsonl": "generic",
}


def _lazy(fmt: str, module: str) -> Reader:
    def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
        mod = import_module(f"aisle.data.readers.{module}")
        fn = getattr(mod, f"read_{fmt}".replace("-", "_"), None) or mod.read
        return fn(path, options, log)

    read.__name__ = f"read_{module}"
    return read


READERS: dict[str, Reader] = {fmt: _lazy(fmt, mod) for fmt, mod in _MODULES.items()}
URL_FORMATS = ("store",)
"""Formats whose spec may be a server URL (`store:postgresql://...`) rather than a path."""


def read_dataspec(spec: str | DataSpec, *, on_error: OnError = "fail") -> Dataset:
    """Read and validate a `FORMAT:PATH[?options]` source. Raises DataError under `fail` at the first bad row."""
    ds = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    if ds.format not in READERS:
        raise ValueError(f"unknown data format {ds.format!r}; known: {', '.join(sorted(READERS))}")
    if ds.url is not None:  # a server, not a file: only formats in URL_FORMATS read one (a store: nothing to reject)
        if ds.format not in URL_FORMATS:
            raise ValueError(f"the {ds.format!r} format reads a file, not a URL (from data spec {str(ds)!r}); "
                             f"a URL is read by: {', '.join(URL_FORMATS)}")
        data = READERS[ds.format](ds.url, ds.options, RejectLog(on_error=on_error))  # type: ignore[arg-type]
        data.check_accounting()
        return data
    if not ds.path.exists():
        raise FileNotFoundError(f"{ds.path}: no such file or folder (from data spec {str(ds)!r})")
    # every reject is collected first, so that under `fail` the error names the first bad line of the source,
    # whichever stage (line structure, then field rules) found it
    log = RejectLog(on_error="skip")
    data = READERS[ds.format](ds.path, ds.options, log)
    if on_error == "fail" and log.rejects:
        first_file = log.rejects[0].file  # files in the order the reader read them; lines in file order
        raise DataError(min((r for r in log.rejects if r.file == first_file), key=lambda r: r.line))
    order = {f: i for i, f in enumerate(dict.fromkeys(r.file for r in log.rejects))}
    log.rejects.sort(key=lambda r: (order[r.file], r.line))
    data.log.on_error = on_error
    data.check_accounting()
    return data


__all__ = ["READERS", "URL_FORMATS", "DataSpec", "Dataset", "Reader", "read_dataspec"]
