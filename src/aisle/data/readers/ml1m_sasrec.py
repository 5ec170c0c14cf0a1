"""MovieLens-1M in the SASRec/gSASRec benchmark split (asash/gSASRec-pytorch `datasets/ml1m`), flattened.

PATH is a folder with `train_input.txt`, `val_input.txt`, `val_output.txt`, `test_output.txt` and, optionally,
`val_users.txt`. Ids are the benchmark's SAS ids (1-based, dense), not MovieLens ids (a `mapping/` folder
translates them). Each user's full chronological sequence `seq` is spread over the files:

* `train_input.txt` line i: user i's `seq[:-3]` if i is a validation user, else `seq[:-2]`;
* `val_input.txt` line j: a validation user's `seq[:-2]`, i.e. their train line plus `seq[-3]`;
* `val_output.txt` line j: that user's `seq[-2]`; `test_output.txt` line i: user i's `seq[-1]`;
* `val_users.txt` line j: the user of val line j. Without it, the user is found by matching the val line minus
  its last item against the train lines (the match must be unique).

Events are each user's known sequence: every train item, plus `seq[-3]` and `seq[-2]` for validation users,
plus `seq[-1]` for everyone. Non-validation users' `seq[-2]` is in no file, so it is missing, not guessed.
The interactions are MovieLens ratings whose stars this split dropped: they are `rating` events with a null
`value` (neither a view, a click nor a purchase would be true). There are no timestamps, only order: an
event's timestamp is its index in the user's full sequence, in seconds after the Unix epoch (ts_unit "s"),
so ordering by time reproduces the sequence and the missing `seq[-2]` leaves a one-second hole.

The benchmark's fixed targets go to `extras["split"]` (user_id, item_id, stage): stage "valid" for each
`val_output` line, "test" for each `test_output` line. They are also events (the last ones of each user);
the split says which to hold out, so results stay comparable with published gSASRec numbers.
Accounting: events count items, one per train token, one per val_input line (its new last item), one per
val_output and test_output line; the split counts one row per output line. A train line that does not decode
is one reject (its item count is unknown), and its user's later events are rejected for want of a train line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import read_lines
from aisle.data.validation import LINE, RejectLog, Rule, apply_rules, validate_events

FILES = ("train_input.txt", "val_input.txt", "val_output.txt", "test_output.txt")
_TOKENS = pl.col("text").str.extract_all(r"\S+")


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    if not path.is_dir():
        raise ValueError(f"{path}: the 'ml1m-sasrec' format is a folder with {', '.join(FILES)}")
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)} (the gSASRec ml1m split has all of {FILES})")
    encoding = options.get("encoding", "utf-8")
    train_file, val_in_file, val_out_file, test_file = (path / f for f in FILES)

    # train_input: line number = user; one event per token, at its index in the user's sequence.
    train = read_lines(train_file, table="events", log=log, encoding=encoding, keep_blank=True).with_columns(
        _TOKENS.alias("_tokens"))
    log.seen("events", int(train["_tokens"].list.len().sum()))
    train = train.with_columns(pl.col(LINE).cast(pl.String).alias("user_id"),
                               pl.col("_tokens").list.len().alias("_n"))
    train_events = (train.filter(pl.col("_n") > 0)
                    .with_columns(pl.int_ranges(0, pl.col("_n")).alias("timestamp"))
                    .explode("_tokens", "timestamp")
                    .select(LINE, "user_id", pl.col("_tokens").alias("item_id"), "timestamp"))
    lengths = train.select("user_id", "_n")

    # val_input: one new item per line (seq[-3]) at index len(train line); the rest must repeat the train line.
    val_in = read_lines(val_in_file, table="events", log=log, encoding=encoding, keep_blank=True).with_columns(
        _TOKENS.alias("_tokens"))
    log.seen("events", val_in.height)
    val_in = val_in.with_columns(pl.col(LINE).alias("_j"),
                                 pl.col("_tokens").list.slice(0, pl.col("_tokens").list.len() - 1).alias("_prefix"))
    val_users = _val_users(path, val_in, train, encoding)
    val_in = val_in.join(val_users, on="_j", how="left").join(
        train.select("user_id", pl.col("_tokens").alias("_train")), on="user_id", how="left")
    val_in = val_in.select(LINE, "user_id", pl.col("_tokens").list.last().alias("item_id"),
                           (pl.col("_train").is_null() | (pl.col("_prefix") != pl.col("_train"))).alias("_mismatch"))
    val_rules: list[Rule] = [
        ("item_id", pl.col("item_id").is_null(), pl.lit("empty line: expected the user's train items plus one")),
        ("(line)", pl.col("user_id").is_null(), pl.lit("no user for this validation line (val_users.txt)")),
        ("(line)", pl.col("_mismatch"), pl.format("not user {}'s train_input line plus one item", pl.col("user_id"))),
    ]
    val_in = apply_rules(val_in, val_rules, file=str(val_in_file), table="events", log=log)
    val_in_events = val_in.join(lengths, on="user_id", how="left").select(
        LINE, "user_id", "item_id", pl.col("_n").alias("timestamp"))

    # val_output line j: seq[-2] of val user j; test_output line i: seq[-1] of user i.
    val_out = _targets(val_out_file, encoding, log).join(val_users, on="_j", how="left")
    test_out = _targets(test_file, encoding, log).with_columns(pl.col("_j").cast(pl.String).alias("user_id"))
    is_val = pl.col("user_id").is_in(val_users["user_id"].implode())
    val_out_events = val_out.join(lengths, on="user_id", how="left").with_columns(
        (pl.col("_n") + 1).alias("timestamp"))
    test_events = test_out.join(lengths, on="user_id", how="left").with_columns(
        (pl.col("_n") + pl.when(is_val).then(2).otherwise(1)).alias("timestamp"))

    events = pl.concat([
        _validate(train_events, train_file, log),
        _validate(val_in_events, val_in_file, log),
        _validate(val_out_events, val_out_file, log),
        _validate(test_events, test_file, log),
    ])
    split = pl.concat([
        _split_rows(val_out_events, "valid", val_out_file, log),
        _split_rows(test_events, "test", test_file, log),
    ])
    return Dataset(name=path.name, events=events, extras={"split": split}, log=log)


def _targets(file: Path, encoding: str, log: RejectLog) -> pl.DataFrame:
    """One item per line (line j = j-th user of that file). Each line feeds one event and one split row."""
    df = read_lines(file, table="events", log=log, encoding=encoding)
    log.seen("events", df.height)
    log.seen("split", df.height)
    return df.select(LINE, pl.col(LINE).alias("_j"), _TOKENS.list.first().alias("item_id"),
                     _TOKENS.list.len().alias("_width"))


def _val_users(path: Path, val_in: pl.DataFrame, train: pl.DataFrame, encoding: str) -> pl.DataFrame:
    """(`_j`, user_id) for each val line j: from val_users.txt, else by matching val line minus its last item."""
    file = path / "val_users.txt"
    if file.exists():
        # not a table of rows but the key of the val lines: a line that does not decode leaves its val line
        # without a user, and that line is rejected ("no user for this validation line")
        users = read_lines(file, table="val_users", log=RejectLog(on_error="skip"), encoding=encoding)
        return users.select(pl.col(LINE).alias("_j"), pl.col("text").str.strip_chars().alias("user_id"))
    key = pl.col("_tokens").list.join(" ")
    by_train = train.group_by(key.alias("_key")).agg(pl.col("user_id").first(), pl.len().alias("_count"))
    matched = val_in.select("_j", pl.col("_prefix").list.join(" ").alias("_key")).join(by_train, on="_key",
                                                                                       how="left")
    return matched.select("_j", pl.when(pl.col("_count") == 1).then(pl.col("user_id")).alias("user_id"))


def _validate(raw: pl.DataFrame, file: Path, log: RejectLog) -> pl.DataFrame:
    """Raw events of one file -> validated `rating` events (ids checked, timestamps are sequence indexes)."""
    rules = _id_rules(raw)
    rules.append(("user_id", pl.col("user_id").is_not_null() & pl.col("timestamp").is_null(),
                  pl.format("user {} has no line in train_input.txt", pl.col("user_id"))))
    raw = apply_rules(raw.drop("_j", "_n", strict=False), rules, file=str(file), table="events", log=log)
    raw = raw.drop("_width", strict=False).with_columns(pl.lit("rating").alias("event_type"))
    return validate_events(raw, file=str(file), log=log, ts_unit="s")


def _split_rows(df: pl.DataFrame, stage: str, file: Path, log: RejectLog) -> pl.DataFrame:
    """The targets of one output file (already joined to their users) -> split rows, checked like the events."""
    rules: list[Rule] = [
        ("user_id", pl.col("user_id").is_null(), pl.lit("no user for this line (val_users.txt)")),
        ("user_id", pl.col("_n").is_null(), pl.format("user {} has no line in train_input.txt", pl.col("user_id"))),
        ("item_id", pl.col("item_id").is_null(), pl.lit("missing item id")),
        *_id_rules(df),
    ]
    good = apply_rules(df.select(LINE, "user_id", "item_id", "_width", "_n"), rules, file=str(file), table="split",
                       log=log)
    return good.select("user_id", "item_id", pl.lit(stage).alias("stage"))


def _id_rules(df: pl.DataFrame) -> list[Rule]:
    """Benchmark ids are positive integers: anything else is a damaged file, rejected by line."""
    rules: list[Rule] = [("item_id", pl.col("item_id").is_not_null() & ~pl.col("item_id").str.contains(r"^\d+$"),
                          pl.format("bad item id '{}' (expected a positive integer)", pl.col("item_id")))]
    if "_width" in df.columns:
        rules.append(("item_id", pl.col("_width") > 1,
                      pl.format("too many fields: expected 1 item id, got {}", pl.col("_width"))))
    return rules
