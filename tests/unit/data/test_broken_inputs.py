"""Broken inputs, one kind per test: under `fail` the error names file:line, table, field and reason;
under `skip` loaded + rejected = total with the exact numbers, and the rejects file has one JSON line per reject.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aisle.data.readers import Dataset, read_dataspec
from aisle.data.validation import DataError

EVENTS_HEADER = "user_id,item_id,event_type,timestamp\n"


def check(spec: str, file: Path, *, line: int, table: str, field: str, reason: str, counts: dict[str, int],
          tmp_path: Path) -> tuple[Dataset, list[dict[str, object]]]:
    """Assert the `fail` message (`reason` is a regex) and the `skip` accounting; return data and rejects file."""
    with pytest.raises(DataError) as info:
        read_dataspec(spec)
    expected = rf"{re.escape(str(file))}:{line}: {table} field '{re.escape(field)}': {reason}"
    assert re.fullmatch(expected, str(info.value)), str(info.value)
    assert (info.value.reject.file, info.value.reject.line, info.value.reject.field) == (str(file), line, field)

    data = read_dataspec(spec, on_error="skip")
    assert data.accounting()[table] == counts
    assert counts["loaded"] + counts["rejected"] == counts["total"]
    out = tmp_path / "rejects" / "rejects.jsonl"
    data.log.write(out)
    rejects = [json.loads(text) for text in out.read_text(encoding="utf-8").splitlines()]
    assert len(rejects) == len(data.log.rejects)
    for rec in rejects:
        assert {"file", "line", "table", "field", "reason", "raw"} <= rec.keys()
        assert rec["file"] == str(file)
    first = min((r for r in rejects if r["table"] == table), key=lambda r: r["line"])
    assert (first["line"], first["field"]) == (line, field)
    assert re.fullmatch(reason, first["reason"])
    return data, rejects


# ---- bad timestamp ---------------------------------------------------------------------------------


def test_bad_timestamp_csv(tmp_path) -> None:
    f = tmp_path / "events.csv"
    f.write_text(EVENTS_HEADER + "u1,i1,view,2024-03-01T10:00:00Z\n"
                 "u2,i2,view,2024-02-30T10:00:00Z\n"  # no 30 February
                 "u3,i3,view,2024-03-01T10:02:00Z\n"
                 "u4,i4,view,\n")
    _, rejects = check(f"csv:{f}", f, line=3, table="events", field="timestamp",
                       reason=r"bad timestamp '2024-02-30T10:00:00Z'",
                       counts={"total": 4, "loaded": 2, "rejected": 2}, tmp_path=tmp_path)
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "bad timestamp '2024-02-30T10:00:00Z'"), (5, "missing timestamp")]
    assert json.loads(rejects[0]["raw"])["user_id"] == "u2"


def test_bad_timestamp_in_epoch_jsonl(tmp_path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('{"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": 1709287200}\n'
                 '{"user_id": "u2", "item_id": "i2", "event_type": "view", "timestamp": "yesterday"}\n'
                 '{"user_id": "u3", "item_id": "i3", "event_type": "view", "timestamp": 1709287300}\n')
    check(f"jsonl:{f}", f, line=2, table="events", field="timestamp", reason=r"bad timestamp 'yesterday'",
          counts={"total": 3, "loaded": 2, "rejected": 1}, tmp_path=tmp_path)


# ---- missing ids -----------------------------------------------------------------------------------


def test_missing_user_id(tmp_path) -> None:
    f = tmp_path / "events.csv"
    f.write_text(EVENTS_HEADER + "u1,i1,view,2024-03-01T10:00:00Z\n"
                 ",i2,view,2024-03-01T10:01:00Z\n"
                 "  ,i3,view,2024-03-01T10:02:00Z\n")
    check(f"csv:{f}", f, line=3, table="events", field="user_id", reason=r"missing user id",
          counts={"total": 3, "loaded": 1, "rejected": 2}, tmp_path=tmp_path)


def test_missing_item_id(tmp_path) -> None:
    f = tmp_path / "events.csv"
    f.write_text(EVENTS_HEADER + "u1,i1,view,2024-03-01T10:00:00Z\n"
                 "u2,,purchase,2024-03-01T10:01:00Z\n"
                 "u3,,search,2024-03-01T10:02:00Z\n")  # a search needs no item
    data, _ = check(f"csv:{f}", f, line=3, table="events", field="item_id", reason=r"missing item id",
                    counts={"total": 3, "loaded": 2, "rejected": 1}, tmp_path=tmp_path)
    assert data.events["event_type"].to_list() == ["view", "search"]


def test_missing_item_id_in_a_catalog(tmp_path) -> None:
    f = tmp_path / "items.jsonl"
    f.write_text('{"sku": "a", "name": "Shoe"}\n{"name": "Nameless"}\n{"sku": " ", "name": "Blank"}\n')
    check(f"jsonl:{f}?table=items&item_id=sku&title=name", f, line=2, table="items", field="item_id",
          reason=r"missing item id", counts={"total": 3, "loaded": 1, "rejected": 2}, tmp_path=tmp_path)


# ---- wrong encoding --------------------------------------------------------------------------------


def test_latin1_bytes_in_a_utf8_csv(tmp_path) -> None:
    f = tmp_path / "events.csv"
    f.write_bytes(EVENTS_HEADER.encode() + b"u1,i1,view,2024-03-01T10:00:00Z\n"
                  b"u2,caf\xe9,view,2024-03-01T10:01:00Z\n"
                  b"u3,i3,view,2024-03-01T10:02:00Z\n")
    _, rejects = check(f"csv:{f}", f, line=3, table="events", field="(line)",
                       reason=r"not valid utf-8: byte 0xe9 at column 7 \(set the file's encoding, e\.g\. "
                              r"\?encoding=latin-1\)",
                       counts={"total": 3, "loaded": 2, "rejected": 1}, tmp_path=tmp_path)
    assert rejects[0]["raw"] == "u2,caf\ufffd,view,2024-03-01T10:01:00Z"
    fixed = read_dataspec(f"csv:{f}?encoding=latin-1")
    assert fixed.events["item_id"].to_list() == ["i1", "caf\u00e9", "i3"]


def test_latin1_bytes_in_a_utf8_jsonl(tmp_path) -> None:
    f = tmp_path / "users.jsonl"
    f.write_bytes(b'{"user_id": "u1", "city": "Paris"}\n{"user_id": "u2", "city": "Montr\xe9al"}\n')
    check(f"jsonl:{f}?table=users", f, line=2, table="users", field="(line)",
          reason=r"not valid utf-8: byte 0xe9 at column 33 .*",
          counts={"total": 2, "loaded": 1, "rejected": 1}, tmp_path=tmp_path)


# ---- truncated last line ---------------------------------------------------------------------------


def test_truncated_last_csv_row(tmp_path) -> None:
    f = tmp_path / "events.csv"
    f.write_text(EVENTS_HEADER + "u1,i1,view,2024-03-01T10:00:00Z\nu2,i2,view,2024-03-01T10:01:00Z\nu3,i3,vi")
    _, rejects = check(f"csv:{f}", f, line=4, table="events", field="timestamp",
                       reason=r"truncated row: expected 4 fields, got 3",
                       counts={"total": 3, "loaded": 2, "rejected": 1}, tmp_path=tmp_path)
    assert rejects[0]["raw"] == "u3,i3,vi"


def test_truncated_last_jsonl_line(tmp_path) -> None:
    f = tmp_path / "events.jsonl"
    f.write_text('{"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": "2024-03-01T10:00:00Z"}\n'
                 '{"user_id": "u2", "item_id": "i2", "event_type": "view", "timestamp": ')
    check(f"jsonl:{f}", f, line=2, table="events", field="(line)", reason=r"truncated JSON line",
          counts={"total": 2, "loaded": 1, "rejected": 1}, tmp_path=tmp_path)


# ---- unknown event type ----------------------------------------------------------------------------


def test_unknown_event_type_generic(tmp_path) -> None:
    f = tmp_path / "events.csv"
    f.write_text("who,what,action,when\nu1,i1,pageview,2024-03-01T10:00:00Z\nu2,i2,refund,2024-03-01T10:01:00Z\n"
                 "u3,i3,Order,2024-03-01T10:02:00Z\n")
    spec = f"csv:{f}?user_id=who&item_id=what&event_type=action&timestamp=when&type.pageview=view&type.order=purchase"
    data, _ = check(spec, f, line=3, table="events", field="event_type",
                    reason=r"unknown event type 'refund' \(expected one of view, click, add_to_cart, "
                           r"remove_from_cart, purchase, rating, search, favorite\)",
                    counts={"total": 3, "loaded": 2, "rejected": 1}, tmp_path=tmp_path)
    assert data.events["event_type"].to_list() == ["view", "purchase"]


def test_unknown_event_type_rees46(tmp_path) -> None:
    f = tmp_path / "2019-Oct.csv"
    f.write_text("event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
                 "2019-10-01 00:00:00 UTC,view,1,10,,x,1.00,u1,s1\n"
                 "2019-10-01 00:00:01 UTC,wishlist,2,10,,x,2.00,u1,s1\n")
    check(f"rees46:{f}", f, line=3, table="events", field="event_type",
          reason=r"unknown REES46 event type 'wishlist' \(expected view, cart, purchase or remove_from_cart\)",
          counts={"total": 2, "loaded": 1, "rejected": 1}, tmp_path=tmp_path)


# ---- negative price / bad numbers -------------------------------------------------------------------


def test_negative_price_in_items(tmp_path) -> None:
    f = tmp_path / "items.csv"
    f.write_text("item_id,title,price\ni1,Shoe,10.00\ni2,Refund voucher,-5.00\ni3,Sock,$2.50\ni4,Hat,free\n")
    data, rejects = check(f"csv:{f}?table=items", f, line=3, table="items", field="price",
                          reason=r"negative price -5(\.0+)?",
                          counts={"total": 4, "loaded": 2, "rejected": 2}, tmp_path=tmp_path)
    assert [(r["line"], r["reason"]) for r in rejects][1] == (5, "price 'free' is not a number")
    assert data.items.select("item_id", "price").rows() == [("i1", 10.0), ("i3", 2.5)]


def test_relevance_out_of_range_homedepot(tmp_path) -> None:
    f = tmp_path / "train.csv"
    f.write_text("id,product_uid,product_title,search_term,relevance\n1,100,Hammer,hammer,3\n"
                 "2,100,Hammer,claw hammer,0\n")
    check(f"homedepot:{f}", f, line=3, table="judgments", field="relevance",
          reason=r"relevance '0' is not a number in \[1, 3\]",
          counts={"total": 2, "loaded": 1, "rejected": 1}, tmp_path=tmp_path)
