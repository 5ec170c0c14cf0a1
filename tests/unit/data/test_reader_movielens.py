from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

RECBOLE = FIXTURES / "movielens" / "recbole"
# the ML-1M `.dat` layout with invented rows, written per test (no GroupLens file is tracked here)
DAT_FILES = {
    "movies.dat": "500::Quiet Harbor (1975)::Drama\n600::Tiny Robots (1996)::Animation|Children's|Musical\n"
                  "3::R\u00eave Bleu, Le (1995)::Drama|Musical\n",
    "ratings.dat": "1::500::5::970000000\n1::600::3::970000100\n2::500::4::970000200\n",
    "users.dat": "1::F::1::10::12345\n2::M::56::16::67890\n3::M::99::42::55555\n",
}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def dat(tmp_path: Path) -> Path:
    folder = tmp_path / "ml"
    folder.mkdir()
    for name, text in DAT_FILES.items():
        (folder / name).write_bytes(text.encode("latin-1"))  # GroupLens ships latin-1
    return folder


def test_recbole_ratings_items_users() -> None:
    data = read_dataspec(f"movielens:{RECBOLE}")
    assert data.name == "tiny"
    ev = data.events
    assert ev.select("user_id", "item_id", "event_type", "value").rows() == [
        ("1", "10", "rating", 4.0), ("2", "10", "rating", 5.0), ("1", "20", "rating", 2.5)]
    assert ev["timestamp"].to_list() == [datetime(1997, 11, 20, 4, 26, 40, tzinfo=UTC),
                                         datetime(1998, 3, 15, 22, 13, 20, tzinfo=UTC),
                                         datetime(1997, 11, 20, 4, 26, 41, tzinfo=UTC)]
    assert ev["session_id"].null_count() == 3
    items = {r["item_id"]: r for r in data.items.iter_rows(named=True)}
    assert items["10"]["title"] == "Rêve Bleu, Le"
    assert items["10"]["categories"] == ["Drama", "Musical"]
    assert json.loads(items["10"]["attributes"]) == {"release_year": 1995}
    # RecBole's placeholder movie: no year, and genre "unknown" means no genre
    assert (items["20"]["title"], items["20"]["categories"], items["20"]["attributes"]) == ("unkonwn", [], "{}")
    assert items["30"]["title"] == 'Sci "Fi" Story'  # no quoting in atomic files
    assert items["30"]["categories"] == ["Sci-Fi", "Children's"]
    users = dict(data.users.select("user_id", "attributes").rows())
    assert json.loads(users["1"]) == {"age": 31, "gender": "M", "occupation": "engineer", "zip": "12345"}
    assert json.loads(users["2"])["zip"] == "X0X1Y2"
    assert data.accounting() == {"events": {"total": 3, "loaded": 3, "rejected": 0},
                                 "items": {"total": 3, "loaded": 3, "rejected": 0},
                                 "users": {"total": 2, "loaded": 2, "rejected": 0}}


def test_dat_layout_latin1_titles_and_decoded_demographics(dat: Path) -> None:
    data = read_dataspec(f"movielens:{dat}")
    ev = data.events
    assert ev.select("user_id", "item_id", "event_type", "value").rows() == [
        ("1", "500", "rating", 5.0), ("1", "600", "rating", 3.0), ("2", "500", "rating", 4.0)]
    assert ev["timestamp"][0] == datetime(2000, 9, 26, 20, 26, 40, tzinfo=UTC)
    items = {r["item_id"]: r for r in data.items.iter_rows(named=True)}
    assert items["3"]["title"] == "Rêve Bleu, Le"  # latin-1 decoded, year moved to attributes
    assert json.loads(items["3"]["attributes"]) == {"release_year": 1995}
    assert items["600"]["categories"] == ["Animation", "Children's", "Musical"]
    assert (items["500"]["title"], items["500"]["attributes"]) == ("Quiet Harbor", '{"release_year":1975}')
    users = dict(data.users.select("user_id", "attributes").rows())
    assert json.loads(users["1"]) == {"age_band": "Under 18", "gender": "F", "occupation": "K-12 student",
                                      "zip": "12345"}
    assert json.loads(users["2"])["occupation"] == "self-employed"
    # codes outside the GroupLens tables are kept as they are, not dropped or guessed
    assert json.loads(users["3"]) == {"age_band": "99", "gender": "M", "occupation": "42", "zip": "55555"}


def test_dat_without_ratings_has_no_events(dat: Path) -> None:
    (dat / "ratings.dat").unlink()
    data = read_dataspec(f"movielens:{dat}")
    assert (data.events.height, data.items.height, data.users.height) == (0, 3, 3)


def test_recbole_bad_timestamp_and_truncated_row(tmp_path: Path) -> None:
    folder = _copy(RECBOLE, tmp_path / "ml")
    header_and_good = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t880000000\n"
    (folder / "tiny.inter").write_text(header_and_good + "2\t10\t5\tyesterday\n")
    with pytest.raises(DataError, match=r"tiny.inter:3: events field 'timestamp': bad timestamp 'yesterday'"):
        read_dataspec(f"movielens:{folder}")
    (folder / "tiny.inter").write_text(header_and_good + "2\t10\t5\tyesterday\n3\t10\n1\t20\tlots\t880000001\n")
    with pytest.raises(DataError, match=r"tiny.inter:3: events field 'timestamp'"):
        read_dataspec(f"movielens:{folder}")  # the first bad line, though the truncated row is found first
    data = read_dataspec(f"movielens:{folder}", on_error="skip")
    assert data.accounting()["events"] == {"total": 4, "loaded": 1, "rejected": 3}
    assert [(r.line, r.field) for r in sorted(data.log.rejects, key=lambda r: r.line)] == [
        (3, "timestamp"), (4, "rating:float"), (5, "value")]
    assert data.events["timestamp"][0] == datetime(1997, 11, 20, 4, 26, 40, tzinfo=UTC)


def test_dat_wrong_field_count_and_encoding(dat: Path) -> None:
    # movies.dat is latin-1: read as UTF-8 the accented title is a decode reject, the rest loads
    with pytest.raises(DataError, match=r"movies.dat:3: items field '\(line\)': not valid utf-8: byte 0xea"):
        read_dataspec(f"movielens:{dat}?encoding=utf-8")
    (dat / "users.dat").write_text("1::F::1::10::12345\n2::M::56\n")
    with pytest.raises(DataError, match=r"users.dat:2: users field 'occupation': truncated row: expected 5 fields"):
        read_dataspec(f"movielens:{dat}")
    data = read_dataspec(f"movielens:{dat}", on_error="skip")
    assert data.accounting()["users"] == {"total": 2, "loaded": 1, "rejected": 1}


def test_not_a_movielens_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no MovieLens files"):
        read_dataspec(f"movielens:{tmp_path}")


@pytest.mark.realdata
def test_real_ml100k_counts() -> None:
    data = read_dataspec(f"movielens:{shared_path('movielens-100k')}")
    ev = data.events
    assert (ev.height, ev["user_id"].n_unique(), ev["item_id"].n_unique()) == (100_000, 943, 1_682)
    assert (data.items.height, data.users.height) == (1_682, 943)
    assert ev["value"].value_counts().sort("value").rows() == [
        (1.0, 6_110), (2.0, 11_370), (3.0, 27_145), (4.0, 34_174), (5.0, 21_201)]
    assert (ev["timestamp"].min(), ev["timestamp"].max()) == (datetime(1997, 9, 20, 3, 5, 10, tzinfo=UTC),
                                                              datetime(1998, 4, 22, 23, 10, 38, tzinfo=UTC))
    toy = data.items.row(by_predicate=pl.col("item_id") == "1", named=True)
    assert (toy["title"], toy["categories"]) == ("Toy Story", ["Animation", "Children's", "Comedy"])
    assert data.log.rejects == []


@pytest.mark.realdata
def test_real_ml1m_original_items_and_users() -> None:
    data = read_dataspec(f"movielens:{shared_path('movielens-1m/original')}")
    assert (data.events.height, data.items.height, data.users.height) == (0, 3_883, 6_040)
    toy = data.items.row(by_predicate=pl.col("item_id") == "1", named=True)
    assert (toy["title"], toy["categories"], toy["attributes"]) == (
        "Toy Story", ["Animation", "Children's", "Comedy"], '{"release_year":1995}')
    assert data.items["attributes"].str.contains("release_year").all()
    bands = data.users["attributes"].str.json_path_match("$.age_band").alias("band").value_counts().sort("band")
    assert bands.rows() == [("18-24", 1_103), ("25-34", 2_096), ("35-44", 1_193), ("45-49", 550), ("50-55", 496),
                            ("56+", 380), ("Under 18", 222)]
