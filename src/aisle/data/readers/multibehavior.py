"""Multi-behaviour implicit-feedback folders (MuLe / CRGCN / MBCGCN releases of Tmall, Taobao and JData).

PATH is one dataset's folder. Each file holds one behaviour, one `user_id item_id` pair per line
(whitespace-separated; ids are shared across the folder's files):

    view.txt -> view    collect.txt -> favorite    cart.txt -> add_to_cart    buy.txt -> purchase

"collect" is Tmall's/JD's wishlist, i.e. `favorite`. `train.txt`, where present, is byte-identical to
`buy.txt` in the published data, so it is read (as `purchase`) only when `buy.txt` is absent: reading both
would double every purchase. `valid.txt` and `test.txt` are the benchmark's held-out buy pairs; they are in
no behaviour file, and have no time, so they are not events but the fixed evaluation targets, in
`extras["valid"]` and `extras["test"]` (user_id, item_id).

The files have no timestamps and their order is not time either (the Tmall and JData files are shuffled,
Taobao's are sorted by id), so an event's timestamp is its line number minus one, in seconds after the Unix
epoch (ts_unit "s"): ordering by time reproduces each file's order and means nothing across files. Use
these datasets with their fixed split or random splits, never a temporal one. There are no item or user
tables (ids only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import read_split_lines
from aisle.data.validation import LINE, RejectLog, validate_events

#: behaviour file stem -> event type, in the funnel's order
BEHAVIOURS: tuple[tuple[str, str], ...] = (
    ("view", "view"), ("collect", "favorite"), ("cart", "add_to_cart"), ("buy", "purchase"),
)
HELD_OUT = ("valid", "test")
PAIR = ("user_id", "item_id")  # one whitespace-separated pair per line


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    if not path.is_dir():
        raise ValueError(f"{path}: the 'multibehavior' format is a folder of buy/cart/collect/view/valid/test .txt")
    encoding = options.get("encoding", "utf-8")
    frames = []
    for stem, event_type in BEHAVIOURS:
        file = path / f"{stem}.txt"
        if stem == "buy" and not file.exists():
            file = path / "train.txt"
        if not file.exists():
            continue
        pairs = read_split_lines(file, names=PAIR, table="events", encoding=encoding, log=log)
        raw = pairs.with_columns((pl.col(LINE) - 1).alias("timestamp"), pl.lit(event_type).alias("event_type"))
        frames.append(validate_events(raw, file=str(file), log=log, ts_unit="s"))
    extras = {stem: read_split_lines(file, names=PAIR, table=stem, encoding=encoding, log=log).drop(LINE)
              for stem in HELD_OUT if (file := path / f"{stem}.txt").exists()}
    if not frames and not extras:
        names = ", ".join(f"{s}.txt" for s, _ in BEHAVIOURS)
        raise ValueError(f"{path}: no multi-behaviour files here (expected {names}, train.txt, valid.txt, test.txt)")
    data = Dataset(name=path.name, extras=extras, log=log)
    if frames:
        data.events = pl.concat(frames)
    return data
