from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

TINY = FIXTURES / "rees46" / "tiny.csv"
HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"


def test_fixture_events_map_the_funnel() -> None:
    data = read_dataspec(f"rees46:{TINY}")
    ev = data.events
    assert ev["event_type"].to_list() == [
        "view", "view", "add_to_cart", "remove_from_cart", "add_to_cart", "purchase", "view"]
    assert ev["value"].to_list() == [None, None, None, None, None, 1059.99, None]  # the amount, on purchases only
    assert ev.row(5, named=True) == {
        "event_id": None, "user_id": "535871217", "item_id": "1004237", "event_type": "purchase",
        "timestamp": datetime(2019, 10, 1, 0, 3, tzinfo=UTC), "session_id": "c6bd7419-2748-4c56-95b4-8cec9ff8b80d",
        "value": 1059.99, "query": None, "request_id": None}
    assert data.accounting()["events"] == {"total": 7, "loaded": 7, "rejected": 0}


def test_fixture_items_take_the_latest_row() -> None:
    data = read_dataspec(f"rees46:{TINY}")
    items = {r["item_id"]: r for r in data.items.to_dicts()}
    assert list(items) == ["44600062", "1004237", "3900821"]
    phone = items["1004237"]
    assert (phone["brand"], phone["categories"], phone["price"]) == ("apple", ["electronics", "smartphone"], 1059.99)
    assert json.loads(phone["attributes"]) == {"category_id": "2053013555631882655"}
    assert items["44600062"]["categories"] == []  # no category_code
    assert items["3900821"]["brand"] is None
    assert items["3900821"]["categories"] == ["appliances", "environment", "water_heater"]
    assert data.accounting()["items"] == {"total": 3, "loaded": 3, "rejected": 0}


def test_unknown_event_type_is_rejected_not_mapped(tmp_path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(
        HEADER
        + "2019-10-01 00:00:00 UTC,view,1,10,a.b,x,1.00,u1,s1\n"
        + "2019-10-01 00:00:01 UTC,click,2,10,a.b,x,2.00,u1,s1\n"  # an Aisle type, but not a REES46 one
        + "2019-10-01 00:00:02 UTC,purchase,3,10,a.b,x,abc,u2,s2\n"
        + "2019-10-01 00:00:03 UTC,view,,10,a.b,x,1.00,u2,s2\n"
        + "2019-10-01 00:00:04 UTC,cart,1,10,a.b,x,-1.00,u2,s2\n"
    )
    with pytest.raises(DataError, match=r"bad\.csv:3: events field 'event_type': unknown REES46 event type 'click' "
                                        r"\(expected view, cart, purchase or remove_from_cart\)$"):
        read_dataspec(f"rees46:{f}")
    data = read_dataspec(f"rees46:{f}", on_error="skip")
    assert data.accounting()["events"] == {"total": 5, "loaded": 2, "rejected": 3}
    # products 1, 2, 3 (the row without product_id describes none); 1's latest row has a negative price
    assert data.accounting()["items"] == {"total": 3, "loaded": 1, "rejected": 2}
    assert [(r.line, r.table, r.field, r.reason) for r in data.log.rejects[:4]] == [
        (3, "events", "event_type",
         "unknown REES46 event type 'click' (expected view, cart, purchase or remove_from_cart)"),
        (4, "events", "value", "value 'abc' is not a finite number"),
        (4, "items", "price", "price 'abc' is not a number"),
        (5, "events", "item_id", "missing item id"),
    ]
    last = data.log.rejects[4]
    assert (last.line, last.table, last.field) == (6, "items", "price")
    assert re.fullmatch(r"negative price -1(\.0+)?", last.reason)
    assert data.items["item_id"].to_list() == ["2"]


def test_bad_timestamp_names_the_value(tmp_path) -> None:
    f = tmp_path / "ts.csv"
    f.write_text(HEADER + "2019-10-01 00:00:00 UTC,view,1,10,,x,1.00,u1,s1\n"
                 "2019-10-01T00:00 UTC,view,1,10,,x,1.00,u1,s1\n")
    with pytest.raises(DataError, match=r"ts\.csv:3: events field 'timestamp': bad timestamp '2019-10-01T00:00 UTC'$"):
        read_dataspec(f"rees46:{f}")
    loose = read_dataspec(f"rees46:{f}?ts_format=%Y-%m-%dT%H:%M UTC", on_error="skip")
    assert loose.accounting()["events"] == {"total": 2, "loaded": 1, "rejected": 1}


@pytest.mark.realdata
def test_real_head_of_october_counts() -> None:
    data = read_dataspec(f"rees46:{shared_path('rees46-events-sample/2019-Oct-head.csv')}")
    ev = data.events
    assert data.accounting()["events"] == {"total": 17_434, "loaded": 17_434, "rejected": 0}
    assert data.accounting()["items"] == {"total": 6_493, "loaded": 6_493, "rejected": 0}
    assert ev["event_type"].value_counts().sort("event_type").rows() == [
        ("add_to_cart", 165), ("purchase", 214), ("view", 17_055)]
    assert (ev["user_id"].n_unique(), ev["session_id"].n_unique(), ev["item_id"].n_unique()) == (4_504, 5_066, 6_493)
    assert (ev["timestamp"].min(), ev["timestamp"].max()) == (
        datetime(2019, 10, 1, tzinfo=UTC), datetime(2019, 10, 1, 2, 50, tzinfo=UTC))
    assert ev["value"].is_not_null().sum() == 214
    assert set(data.items["item_id"]) == set(ev["item_id"])
