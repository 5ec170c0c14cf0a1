from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.readers.base import Dataset
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

SPLIT = FIXTURES / "ml1m-sasrec"

# The fixture's users, as (item, position in the full sequence); user 2 is the validation user.
EXPECTED = {
    "1": [("1", 0), ("2", 1), ("3", 2), ("4", 4)],  # seq[-2] is in no file: a hole at position 3
    "2": [("2", 0), ("3", 1), ("5", 2), ("1", 3), ("4", 4)],  # train + val_input's last + val_output + test
    "3": [("4", 0), ("5", 1), ("1", 2), ("2", 3), ("3", 5)],
    "4": [("3", 0), ("5", 2)],
}


def _sequences(data: Dataset) -> dict[str, list[tuple[str, int]]]:
    ev = data.events.sort("user_id", "timestamp").with_columns(pl.col("timestamp").dt.epoch("s").alias("pos"))
    return {u: list(zip(g["item_id"], g["pos"], strict=True))
            for (u,), g in ev.group_by("user_id", maintain_order=True)}


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SPLIT, tmp_path / "split"))


def test_fixture_sequences_and_split() -> None:
    data = read_dataspec(f"ml1m-sasrec:{SPLIT}")
    assert _sequences(data) == EXPECTED
    assert set(data.events["event_type"]) == {"rating"}
    assert data.events["value"].null_count() == data.events.height == 16
    assert data.extras["split"].rows() == [("2", "1", "valid"), ("1", "4", "test"), ("2", "4", "test"),
                                           ("3", "3", "test"), ("4", "5", "test")]
    assert data.accounting()["events"] == {"total": 16, "loaded": 16, "rejected": 0}
    assert data.accounting()["split"] == {"total": 5, "loaded": 5, "rejected": 0}
    assert (data.items.height, data.users.height) == (0, 0)


def test_validation_users_are_found_without_val_users_file(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "val_users.txt").unlink()
    data = read_dataspec(f"ml1m-sasrec:{folder}")
    assert _sequences(data) == EXPECTED
    assert data.extras["split"].filter(pl.col("stage") == "valid").rows() == [("2", "1", "valid")]


def test_bad_target_is_rejected_in_events_and_split(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "test_output.txt").write_text("4\n4\nx3\n5\n")
    with pytest.raises(DataError, match=r"test_output.txt:3: events field 'item_id': bad item id 'x3'"):
        read_dataspec(f"ml1m-sasrec:{folder}")
    data = read_dataspec(f"ml1m-sasrec:{folder}", on_error="skip")
    assert data.accounting()["events"] == {"total": 16, "loaded": 15, "rejected": 1}
    assert data.accounting()["split"] == {"total": 5, "loaded": 4, "rejected": 1}
    assert "3" not in data.extras["split"].filter(pl.col("stage") == "test")["user_id"].to_list()


def test_val_input_that_does_not_extend_the_train_line(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "val_input.txt").write_text("2 4 5\n")
    with pytest.raises(DataError, match=r"val_input.txt:1: events field '\(line\)': not user 2's train_input line"):
        read_dataspec(f"ml1m-sasrec:{folder}")
    data = read_dataspec(f"ml1m-sasrec:{folder}", on_error="skip")
    assert data.accounting()["events"] == {"total": 16, "loaded": 15, "rejected": 1}
    assert _sequences(data)["2"] == [("2", 0), ("3", 1), ("1", 3), ("4", 4)]


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "val_output.txt").unlink()
    with pytest.raises(ValueError, match=r"missing val_output\.txt"):
        read_dataspec(f"ml1m-sasrec:{folder}")


@pytest.mark.realdata
def test_real_gsasrec_split_counts() -> None:
    data = read_dataspec(f"ml1m-sasrec:{shared_path('movielens-1m/sasrec_split')}")
    ev = data.events
    # 987,019 train items + 512 val_input last items + 512 val targets + 6,040 test targets
    # = 999,611 interactions - 5,528 seq[-2] of non-validation users
    assert (ev.height, ev["user_id"].n_unique(), ev["item_id"].n_unique()) == (994_083, 6_040, 3_416)
    split = data.extras["split"]
    assert split.group_by("stage").len().sort("stage").rows() == [("test", 6_040), ("valid", 512)]
    assert data.accounting()["split"] == {"total": 6_552, "loaded": 6_552, "rejected": 0}
    # every target is its user's last event (test) or the one before (valid)
    last = ev.sort("timestamp").group_by("user_id").agg(pl.col("item_id").last())
    test = split.filter(pl.col("stage") == "test").select("user_id", "item_id")
    assert last.join(test, on=["user_id", "item_id"]).height == 6_040
    # validation user 14 (first line of val_users.txt): full sequence, no hole
    u14 = ev.filter(pl.col("user_id") == "14").sort("timestamp")
    assert u14["timestamp"].dt.epoch("s").to_list() == list(range(u14.height))
    assert u14["item_id"].tail(3).to_list() == ["1140", "139", "1141"]
