"""MovieLens folders, in the two layouts research code ships them: RecBole atomic files or GroupLens `.dat` files.

PATH is a folder; the layout is detected from the files in it.

* RecBole atomic (`<name>.inter`, `<name>.item`, `<name>.user`; e.g. ML-100K): tab-separated, a header of
  `field:type` names, no quoting. `?name=` picks `<name>` when a folder holds several `.inter` files.
* GroupLens `.dat` (ML-1M, ML-10M): `ratings.dat` `UserID::MovieID::Rating::Timestamp`, `movies.dat`
  `MovieID::Title::Genres` and `users.dat` `UserID::Gender::Age::Occupation::Zip`, `::`-separated, latin-1
  (GroupLens' encoding; `?encoding=` overrides). Any of the three may be absent.

Mapping. A rating is an explicit judgement, not a purchase or a view, so each one is a `rating` event whose
`value` is the stars and whose timestamp is the real epoch-seconds time (UTC). Movies become items: title,
`categories` = the genres (a flat set of labels rather than a path, which is all MovieLens has; the
placeholder genres "unknown" / "(no genres listed)" mean no genre and are left out), `attributes` =
`{"release_year": N}`. ML-1M titles end in " (YYYY)"; the year moves to `release_year` so that titles look
the same in both layouts (RecBole already splits them). Users keep their demographics as attributes:
ML-100K gives exact `age`, `gender`, `occupation`, `zip`; ML-1M gives codes, which are decoded with the
GroupLens README's tables into `age_band` ("18-24") and `occupation` ("programmer") so a person can read them
(an unknown code is kept as its raw text). Items and users are only the rows the files have.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from aisle.data.readers.base import Dataset
from aisle.data.textio import read_delimited, read_split_lines
from aisle.data.validation import LINE, RejectLog, Rule, apply_rules, validate_events, validate_items, validate_users

_NO_GENRE = ["unknown", "(no genres listed)"]

#: GroupLens ML-1M README: users.dat age and occupation codes.
ML1M_AGE_BANDS = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
                  "56": "56+"}
ML1M_OCCUPATIONS = {
    "0": "other", "1": "academic/educator", "2": "artist", "3": "clerical/admin", "4": "college/grad student",
    "5": "customer service", "6": "doctor/health care", "7": "executive/managerial", "8": "farmer",
    "9": "homemaker", "10": "K-12 student", "11": "lawyer", "12": "programmer", "13": "retired",
    "14": "sales/marketing", "15": "scientist", "16": "self-employed", "17": "technician/engineer",
    "18": "tradesman/craftsman", "19": "unemployed", "20": "writer",
}


def read(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    if not path.is_dir():
        raise ValueError(f"{path}: the 'movielens' format is a folder (RecBole .inter/.item/.user files, "
                         "or GroupLens ratings.dat/movies.dat/users.dat)")
    if any(path.glob("*.inter")) or any(path.glob("*.item")) or any(path.glob("*.user")):
        return _read_recbole(path, options, log)
    if any((path / f).exists() for f in ("ratings.dat", "movies.dat", "users.dat")):
        return _read_dat(path, options, log)
    raise ValueError(f"{path}: no MovieLens files here (expected <name>.inter/.item/.user or ratings.dat/"
                     "movies.dat/users.dat)")


# ---- RecBole atomic files -------------------------------------------------------------------------------


def _recbole_name(path: Path, options: Mapping[str, str]) -> str:
    if "name" in options:
        return options["name"]
    stems = sorted({f.stem for ext in ("inter", "item", "user") for f in path.glob(f"*.{ext}")})
    if len(stems) != 1:
        raise ValueError(f"{path}: several RecBole datasets here ({', '.join(stems)}); pick one with ?name=")
    return stems[0]


def _read_atomic(file: Path, table: str, encoding: str, log: RejectLog) -> pl.DataFrame:
    """A RecBole atomic file with its `field:type` header names reduced to `field`."""
    raw = read_delimited(file, table=table, log=log, sep="\t", encoding=encoding, quoting=False)
    return raw.rename({c: c.split(":", 1)[0] for c in raw.columns if c != LINE})


def _has(df: pl.DataFrame, file: Path, columns: tuple[str, ...]) -> bool:
    """False for an empty file (nothing to read); raises when the header lacks a column the mapping needs."""
    found = [c for c in df.columns if c != LINE]
    if not found:
        return False
    missing = [c for c in columns if c not in found]
    if missing:
        raise ValueError(f"{file}: no column {', '.join(missing)} in the header (found {', '.join(found)})")
    return True


def _read_recbole(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    name = _recbole_name(path, options)
    encoding = options.get("encoding", "utf-8")
    data = Dataset(name=name, log=log)
    inter, item, user = (path / f"{name}.{ext}" for ext in ("inter", "item", "user"))
    if not (inter.exists() or item.exists() or user.exists()):
        raise ValueError(f"{path}: no {name}.inter, {name}.item or {name}.user here")
    if inter.exists():
        raw = _read_atomic(inter, "events", encoding, log)
        if _has(raw, inter, ("user_id", "item_id", "timestamp")):
            data.events = _rating_events(raw.rename({"rating": "value"}, strict=False), inter, log)
    if item.exists() and _has(raw := _read_atomic(item, "items", encoding, log), item, ("item_id",)):
        genres = "class" if "class" in raw.columns else "genre"
        items = raw.select(
            LINE,
            "item_id",
            _text_or_empty(raw, "movie_title").alias("title"),
            _genres(raw, genres, " "),
            _json_object({"release_year": _int(raw, "release_year")}).alias("attributes"),
        )
        data.items = validate_items(items, file=str(item), log=log)
    if user.exists() and _has(raw := _read_atomic(user, "users", encoding, log), user, ("user_id",)):
        users = raw.select(LINE, "user_id", _json_object({
            "age": _int(raw, "age"),
            "gender": _opt(raw, "gender"),
            "occupation": _opt(raw, "occupation"),
            "zip": _opt(raw, "zip_code"),
        }).alias("attributes"))
        data.users = validate_users(users, file=str(user), log=log)
    return data


# ---- GroupLens .dat files -------------------------------------------------------------------------------


def _read_dat(path: Path, options: Mapping[str, str], log: RejectLog) -> Dataset:
    encoding = options.get("encoding", "latin-1")
    data = Dataset(name=path.name, log=log)
    ratings, movies, users = path / "ratings.dat", path / "movies.dat", path / "users.dat"
    if ratings.exists():
        raw = read_split_lines(ratings, names=("user_id", "item_id", "value", "timestamp"), sep="::", table="events",
                               encoding=encoding, log=log)
        data.events = _rating_events(raw, ratings, log)
    if movies.exists():
        raw = read_split_lines(movies, names=("item_id", "title", "genres"), sep="::", table="items",
                               encoding=encoding, log=log)
        parts = pl.col("title").str.strip_chars().str.extract_groups(r"^(?<t>.*?)\s*\((?<y>\d{4})\)$")
        raw = raw.with_columns(parts.struct.field("t").alias("_t"), parts.struct.field("y").alias("_y"))
        items = raw.select(
            LINE,
            "item_id",
            pl.coalesce("_t", pl.col("title").str.strip_chars()).fill_null("").alias("title"),
            _genres(raw, "genres", "|"),
            _json_object({"release_year": pl.col("_y").cast(pl.Int64)}).alias("attributes"),
        )
        data.items = validate_items(items, file=str(movies), log=log)
    if users.exists():
        raw = read_split_lines(users, names=("user_id", "gender", "age", "occupation", "zip"), sep="::",
                               table="users", encoding=encoding, log=log)
        age, occupation = pl.col("age").str.strip_chars(), pl.col("occupation").str.strip_chars()
        frame = raw.select(LINE, "user_id", _json_object({
            "age_band": age.replace_strict(ML1M_AGE_BANDS, default=age, return_dtype=pl.String),
            "gender": _opt(raw, "gender"),
            "occupation": occupation.replace_strict(ML1M_OCCUPATIONS, default=occupation, return_dtype=pl.String),
            "zip": _opt(raw, "zip"),
        }).alias("attributes"))
        data.users = validate_users(frame, file=str(users), log=log)
    return data


# ---- shared mapping -------------------------------------------------------------------------------------


def _rating_events(raw: pl.DataFrame, file: Path, log: RejectLog) -> pl.DataFrame:
    """Rating rows (string columns user_id, item_id, value, timestamp) -> validated `rating` events.

    Timestamps are epoch seconds. A non-numeric one is rejected here, naming the value: handing the text
    column to `validate_events` would make it parse the whole column as dates once any value is not a number.
    """
    ts = pl.col("timestamp").str.strip_chars()
    num = ts.cast(pl.Float64, strict=False)
    rules: list[Rule] = [("timestamp", ts.is_not_null() & (ts != "") & num.is_null(),
                          pl.format("bad timestamp '{}' (expected epoch seconds)", ts))]
    raw = apply_rules(raw, rules, file=str(file), table="events", log=log)
    raw = raw.with_columns(num.alias("timestamp"), pl.lit("rating").alias("event_type"))
    return validate_events(raw, file=str(file), log=log, ts_unit="s")


def _genres(raw: pl.DataFrame, column: str, sep: str) -> pl.Expr:
    if column not in raw.columns:
        return pl.lit([], dtype=pl.List(pl.String)).alias("categories")
    labels = pl.col(column).fill_null("").str.split(sep).list.eval(pl.element().str.strip_chars())
    return labels.list.eval(pl.element().filter((pl.element() != "") & ~pl.element().is_in(_NO_GENRE))).alias(
        "categories")


def _opt(raw: pl.DataFrame, column: str) -> pl.Expr:
    """A text column stripped, or nulls when the file lacks it."""
    if column not in raw.columns:
        return pl.lit(None, dtype=pl.String)
    text = pl.col(column).str.strip_chars()
    return pl.when(text != "").then(text)


def _text_or_empty(raw: pl.DataFrame, column: str) -> pl.Expr:
    return _opt(raw, column).fill_null("")


def _int(raw: pl.DataFrame, column: str) -> pl.Expr:
    """Whole numbers as integers; anything else (e.g. ML-100K's "unkonwn" year) is left out of the attributes."""
    return _opt(raw, column).cast(pl.Int64, strict=False)


def _json_object(fields: Mapping[str, pl.Expr]) -> pl.Expr:
    """JSON object text per row from named expressions, keys sorted and nulls left out (as `attributes_json`).

    Each value is encoded by Polars (one-field struct -> `{"k":v}`, braces stripped), so escaping is right
    and no Python runs per row.
    """
    parts = [
        pl.when(expr.is_not_null()).then(
            pl.struct(expr.alias(key)).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}"))
        for key, expr in sorted(fields.items())
    ]
    return pl.concat_str([pl.lit("{"), pl.concat_str(parts, separator=",", ignore_nulls=True), pl.lit("}")])
