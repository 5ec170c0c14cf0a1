from __future__ import annotations

import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path


def test_fixture_sequence_order_and_attributes() -> None:
    data = read_dataspec(f"s3rec:{FIXTURES / 's3rec' / 'Tiny.txt'}")
    ev = data.events.sort("user_id", "timestamp")
    assert ev.height == 9
    assert ev.filter(ev["user_id"] == "3")["item_id"].to_list() == ["4", "1", "2", "5"]
    assert set(ev["event_type"]) == {"purchase"}
    assert data.items.height == 5
    assert data.accounting()["events"] == {"total": 9, "loaded": 9, "rejected": 0}


def test_bad_token_fails_with_line_and_skip_accounts(tmp_path) -> None:
    f = tmp_path / "Bad.txt"
    f.write_text("1 1 2\n2 3 x-y 4\n3 5\n")
    with pytest.raises(DataError, match=r"Bad.txt:2: events field 'item_id': bad item id 'x-y'"):
        read_dataspec(f"s3rec:{f}")
    data = read_dataspec(f"s3rec:{f}", on_error="skip")
    assert data.accounting()["events"] == {"total": 6, "loaded": 3, "rejected": 3}


@pytest.mark.realdata
def test_real_beauty_counts() -> None:
    path = shared_path("amazon-s3rec/Beauty.txt")
    data = read_dataspec(f"s3rec:{path}")
    assert data.events.height == 198_502
    assert data.events["user_id"].n_unique() == 22_363
    assert data.events["item_id"].n_unique() == 12_101


@pytest.mark.realdata
def test_real_sports_counts() -> None:
    data = read_dataspec(f"s3rec:{shared_path('amazon-s3rec/Sports_and_Outdoors.txt')}")
    assert (data.events.height, data.events["user_id"].n_unique(), data.events["item_id"].n_unique()) == (
        296_337, 35_598, 18_357)
