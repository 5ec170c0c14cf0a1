from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

ORDERS = FIXTURES / "csv" / "orders.csv"
ORDER_MAP = ("user_id=customer&item_id=sku&timestamp=ts&event_type=action&value=qty"
             "&type.pageview=view&type.add=add_to_cart&type.order=purchase")


def test_csv_events_with_mapping_and_type_values() -> None:
    data = read_dataspec(f"csv:{ORDERS}?{ORDER_MAP}")
    assert data.events.select("user_id", "item_id", "event_type", "value").rows() == [
        ("c1", "sku-1", "view", None),
        ("c1", "sku-1", "add_to_cart", 1.0),
        ("c1", "sku-1", "purchase", 2.0),
        ("c2", "sku-2", "view", None),  # " PageView ": case and spaces ignored
    ]
    assert data.events["timestamp"][3] == datetime(2024, 3, 2, 9, tzinfo=UTC)
    assert data.accounting()["events"] == {"total": 4, "loaded": 4, "rejected": 0}  # the blank line is no row


def test_csv_items_path_categories_flags_and_extra_columns() -> None:
    spec = f"csv:{FIXTURES / 'csv' / 'catalog.csv'}?table=items&sep=;&item_id=sku&title=name&categories=path" \
           "&available=in_stock"
    data = read_dataspec(spec)
    rows = data.items.select("item_id", "title", "categories", "price", "available", "attributes").rows()
    assert rows == [
        ("sku-1", "Trail shoe", ["Outdoors", "Footwear", "Hiking"], 89.9, True, '{"color":"red","size":"42"}'),
        ("sku-2", "Rain jacket; light", ["Outdoors", "Clothing"], 120.0, False, '{"size":"M"}'),
        ("sku-3", "Gift card", [], None, True, "{}"),
    ]
    assert data.accounting()["items"] == {"total": 3, "loaded": 3, "rejected": 0}


def test_jsonl_users_keep_unmapped_keys_as_attributes() -> None:
    data = read_dataspec(f"jsonl:{FIXTURES / 'jsonl' / 'users.jsonl'}?table=users&user_id=id")
    users = {u: json.loads(a) for u, a in data.users.rows()}
    assert users == {"c1": {"segment": "gold", "age_band": "30-39"}, "c2": {}, "3": {"vip": True, "segment": "silver"}}


def test_jsonl_events_with_searches_and_epoch_ms() -> None:
    spec = (f"jsonl:{FIXTURES / 'jsonl' / 'events.jsonl'}?user_id=user&item_id=item&event_type=type&timestamp=t"
            "&session_id=session&ts_unit=ms")
    data = read_dataspec(spec)
    assert data.events.select("user_id", "item_id", "event_type", "session_id", "value", "query").rows() == [
        ("c1", "sku-1", "view", "s1", None, None),
        ("c1", None, "search", "s1", None, "rain jacket"),
        ("c2", "sku-2", "purchase", None, 2.0, None),
    ]
    assert data.events["timestamp"][0] == datetime(2024, 3, 1, 10, tzinfo=UTC)


def test_jsonl_line_that_is_not_an_object(tmp_path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text('{"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": "2024-01-01"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"e\.jsonl:2: events field '\(line\)': not a JSON object but list$"):
        read_dataspec(f"jsonl:{f}")
    assert read_dataspec(f"jsonl:{f}", on_error="skip").accounting()["events"] == {
        "total": 2, "loaded": 1, "rejected": 1}


def test_parquet_typed_columns_constant_type_and_row_numbers(tmp_path) -> None:
    f = tmp_path / "orders.parquet"
    pl.DataFrame({
        "uid": [7, 8, None, 9],
        "pid": [100, 101, 102, 103],
        "t": [1_709_287_200_000, 1_709_287_260_000, 1_709_287_320_000, 1_709_287_380_000],
        "amount": [9.5, 1.0, 2.0, float("inf")],
    }).write_parquet(f)
    spec = f"parquet:{f}?user_id=uid&item_id=pid&timestamp=t&ts_unit=ms&event_type=@purchase&value=amount"
    with pytest.raises(DataError, match=r"orders\.parquet:3: events field 'user_id': missing user id$"):
        read_dataspec(spec)
    data = read_dataspec(spec, on_error="skip")
    assert data.events.select("user_id", "item_id", "event_type", "value").rows() == [
        ("7", "100", "purchase", 9.5), ("8", "101", "purchase", 1.0)]
    assert data.events["timestamp"][1] == datetime(2024, 3, 1, 10, 1, tzinfo=UTC)
    assert [(r.line, r.field) for r in data.log.rejects] == [(3, "user_id"), (4, "value")]
    assert data.accounting()["events"] == {"total": 4, "loaded": 2, "rejected": 2}


def test_parquet_items_and_a_folder_of_parts(tmp_path) -> None:
    parts = tmp_path / "catalog"
    parts.mkdir()
    pl.DataFrame({"item_id": ["a"], "categories": [["Garden", "Tools"]], "price": [3.5], "stock": [4],
                  "tags": [["new"]]}).write_parquet(parts / "part-0.parquet")
    pl.DataFrame({"item_id": ["b"], "categories": [["Home"]], "price": [-1.0], "stock": [None],
                  "tags": [[]]}).write_parquet(parts / "part-1.parquet")
    data = read_dataspec(f"parquet:{parts}?table=items", on_error="skip")
    assert data.items.select("item_id", "categories", "price", "attributes").rows() == [
        ("a", ["Garden", "Tools"], 3.5, '{"stock":4,"tags":["new"]}')]
    assert [(r.file.split("/")[-1], r.line, r.field) for r in data.log.rejects] == [("part-1.parquet", 1, "price")]
    assert data.accounting()["items"] == {"total": 2, "loaded": 1, "rejected": 1}


def test_epoch_column_with_one_bad_value_rejects_only_that_row(tmp_path) -> None:
    f = tmp_path / "ev.csv"
    f.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,1709287200\nu2,i2,view,never\nu3,i3,view,1709287300\n")
    data = read_dataspec(f"csv:{f}", on_error="skip")
    assert data.events["user_id"].to_list() == ["u1", "u3"]
    assert [r.message().split("/")[-1] for r in data.log.rejects] == [
        "ev.csv:3: events field 'timestamp': bad timestamp 'never'"]


def test_ts_format_option(tmp_path) -> None:
    f = tmp_path / "ev.csv"
    f.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,01/03/2024 10:00\nu2,i2,view,2024-03-01\n")
    data = read_dataspec(f"csv:{f}?ts_format=%d/%m/%Y %H:%M", on_error="skip")
    assert data.events.select("user_id", "timestamp").rows() == [("u1", datetime(2024, 3, 1, 10, tzinfo=UTC))]
    assert [r.message().split("/")[-1] for r in data.log.rejects] == [
        "ev.csv:3: events field 'timestamp': bad timestamp '2024-03-01'"]


def test_headerless_csv_with_columns_and_tab_separator(tmp_path) -> None:
    f = tmp_path / "ev.tsv"
    f.write_text("u1\ti1\tclick\t2024-03-01T10:00:00Z\n")
    data = read_dataspec(f"csv:{f}?sep=tab&columns=user_id,item_id,event_type,timestamp")
    assert data.events.select("user_id", "item_id", "event_type").rows() == [("u1", "i1", "click")]


def test_bad_options_are_errors_not_silence(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown option 'user'"):
        read_dataspec(f"csv:{ORDERS}?user=customer")
    with pytest.raises(ValueError, match=r"no column 'client' \(mapped to user_id\)"):
        read_dataspec(f"csv:{ORDERS}?user_id=client")
    with pytest.raises(ValueError, match=r"'buy' is not an event type"):
        read_dataspec(f"csv:{ORDERS}?{ORDER_MAP}&type.x=buy")
    with pytest.raises(ValueError, match=r"no 'event_type' column; map one"):
        read_dataspec(f"csv:{ORDERS}?user_id=customer&item_id=sku&timestamp=ts")
    with pytest.raises(ValueError, match=r"event_type=@refund"):
        read_dataspec(f"csv:{ORDERS}?user_id=customer&item_id=sku&timestamp=ts&event_type=@refund")
    with pytest.raises(ValueError, match=r"table='orders'"):
        read_dataspec(f"csv:{ORDERS}?table=orders")


@pytest.mark.realdata
def test_real_rees46_file_through_the_generic_csv_and_parquet_paths(tmp_path) -> None:
    path = shared_path("rees46-events-sample/2019-Oct-head.csv")
    spec = (f"csv:{path}?item_id=product_id&timestamp=event_time&session_id=user_session"
            "&type.cart=add_to_cart&ts_format=%Y-%m-%d %H:%M:%S UTC")
    generic = read_dataspec(spec)
    native = read_dataspec(f"rees46:{path}")
    assert generic.accounting()["events"] == {"total": 17_434, "loaded": 17_434, "rejected": 0}
    cols = ["user_id", "item_id", "event_type", "timestamp", "session_id"]
    assert generic.events.select(cols).equals(native.events.select(cols))
    pq = tmp_path / "oct.parquet"
    generic.events.write_parquet(pq)
    again = read_dataspec(f"parquet:{pq}")
    assert again.events.equals(generic.events)
    assert again.events["event_type"].value_counts().sort("event_type").rows() == [
        ("add_to_cart", 165), ("purchase", 214), ("view", 17_055)]
