from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

TINY = FIXTURES / "multibehavior" / "tiny"


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(TINY, tmp_path / "tiny"))


def test_behaviour_files_map_to_event_types_in_line_order() -> None:
    data = read_dataspec(f"multibehavior:{TINY}")
    ev = data.events.with_columns(pl.col("timestamp").dt.epoch("s").alias("pos"))
    assert ev.select("user_id", "item_id", "event_type", "pos").rows() == [
        ("1", "20", "favorite", 0), ("3", "10", "favorite", 1),
        ("2", "10", "add_to_cart", 0),
        ("1", "10", "purchase", 0), ("2", "20", "purchase", 1), ("1", "30", "purchase", 2),
    ]
    assert data.extras["valid"].rows() == [("2", "30")]
    assert data.extras["test"].rows() == [("1", "40"), ("3", "20")]
    assert data.extras["test"].columns == ["user_id", "item_id"]
    assert (data.items.height, data.users.height) == (0, 0)
    assert data.accounting() == {
        "events": {"total": 6, "loaded": 6, "rejected": 0},
        "items": {"total": 0, "loaded": 0, "rejected": 0},
        "users": {"total": 0, "loaded": 0, "rejected": 0},
        "valid": {"total": 1, "loaded": 1, "rejected": 0},
        "test": {"total": 2, "loaded": 2, "rejected": 0},
    }


def test_train_txt_stands_in_for_buy_txt_only_when_buy_is_absent(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    shutil.copy(folder / "buy.txt", folder / "train.txt")
    assert (read_dataspec(f"multibehavior:{folder}").events["event_type"] == "purchase").sum() == 3  # not 6
    (folder / "buy.txt").unlink()
    (folder / "train.txt").write_text("5 50\n")
    ev = read_dataspec(f"multibehavior:{folder}").events
    assert ev.filter(pl.col("event_type") == "purchase").select("user_id", "item_id").rows() == [("5", "50")]


def test_short_and_long_lines_are_rejected(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "cart.txt").write_text("2 10\n7\n\n3  30\n")  # blank line ignored, double space is fine
    with pytest.raises(DataError, match=r"cart.txt:2: events field 'item_id': truncated row: expected 2 fields, got 1"):
        read_dataspec(f"multibehavior:{folder}")
    (folder / "valid.txt").write_text("2 30 9\n4 40\n")
    data = read_dataspec(f"multibehavior:{folder}", on_error="skip")
    assert data.accounting()["events"] == {"total": 8, "loaded": 7, "rejected": 1}
    assert data.accounting()["valid"] == {"total": 2, "loaded": 1, "rejected": 1}
    assert data.extras["valid"].rows() == [("4", "40")]
    assert [r.message() for r in data.log.rejects if r.table == "valid"] == [
        f"{folder / 'valid.txt'}:1: valid field 'item_id': too many fields: expected 2 fields, got 3"]
    carts = data.events.filter(pl.col("event_type") == "add_to_cart")
    assert carts.select("user_id", "item_id", pl.col("timestamp").dt.epoch("s")).rows() == [("2", "10", 0),
                                                                                              ("3", "30", 3)]


def test_folder_without_behaviour_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no multi-behaviour files"):
        read_dataspec(f"multibehavior:{tmp_path}")


def _counts(name: str) -> tuple[dict[str, int], int, int]:
    data = read_dataspec(f"multibehavior:{shared_path(f'multibehavior-tmall-taobao-jdata/{name}')}")
    assert data.log.rejects == []
    by_type = dict(data.events.group_by("event_type").len().rows())
    return by_type, data.extras["valid"].height, data.extras["test"].height


@pytest.mark.realdata
def test_real_tmall_counts() -> None:
    assert _counts("tmall") == ({"purchase": 255_586, "add_to_cart": 1_996, "favorite": 221_514}, 74_158, 31_572)


@pytest.mark.realdata
def test_real_taobao_counts() -> None:
    assert _counts("taobao") == ({"purchase": 92_180, "add_to_cart": 195_476}, 15_449, 15_449)


@pytest.mark.realdata
def test_real_jdata_counts() -> None:
    assert _counts("jdata") == ({"purchase": 321_883, "add_to_cart": 49_891, "favorite": 45_613}, 87_192, 11_500)
