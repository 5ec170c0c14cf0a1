from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime

import polars as pl
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

AMAZON = FIXTURES / "amazon"


def test_fixture_items_are_cleaned_and_one_per_asin() -> None:
    data = read_dataspec(f"amazon:{AMAZON}")
    items = {row["item_id"]: row for row in data.items.to_dicts()}
    assert list(items) == ["A2", "A3", "A1", "A4"]  # A1's second (identical) line is the latest one
    assert data.accounting()["items"] == {"total": 4, "loaded": 4, "rejected": 0}

    a1, a2, a3, a4 = items["A1"], items["A2"], items["A3"], items["A4"]
    assert a1["title"] == ""  # `<span class="a-size-medium ...` junk cleans to nothing
    assert a1["description"] == "First para & more\nSecond"
    assert a1["brand"] == "Acme Press"
    assert a1["categories"] == ["Magazine Subscriptions", "Hobbies", "Model Trains"]  # root kept
    assert a1["price"] == 12.99
    assert json.loads(a1["attributes"]) == {"also_buy": ["A2"], "main_cat": "Magazine Subscriptions"}

    assert a2["title"] == "Garden & Home"
    assert a2["brand"] is None and a2["description"] == ""
    assert a2["categories"] == ["AMAZON FASHION"]  # empty category list -> [main_cat], from the <img alt=...>
    assert a2["price"] is None
    assert json.loads(a2["attributes"]) == {"also_view": ["A1", "A3"], "main_cat": "AMAZON FASHION",
                                            "price_text": "$10.99 - $24.99"}

    assert a3["title"] == ""  # ` Magazines" />` is the tail of a tag
    assert a3["brand"] == "Big Brand"
    assert a3["description"] == "One string, not a list"
    assert a3["price"] == 1299.0

    assert a4["title"] == "Cheap Reads"
    assert a4["categories"] == ["Magazine Subscriptions", "Books & Literature"]
    assert a4["price"] is None  # CSS junk: no price, not kept
    assert json.loads(a4["attributes"]) == {"main_cat": "Magazine Subscriptions"}


def test_fixture_ratings_are_rating_events() -> None:
    data = read_dataspec(f"amazon:{AMAZON}")
    ev = data.events
    assert ev.select("user_id", "item_id", "event_type", "value").rows() == [
        ("U1", "A1", "rating", 5.0), ("U1", "A2", "rating", 3.0), ("U2", "A9", "rating", 4.0)]
    assert ev["timestamp"][0] == datetime(2001, 11, 8, tzinfo=UTC)
    assert data.accounting()["events"] == {"total": 3, "loaded": 3, "rejected": 0}


def test_one_file_and_the_other_by_option() -> None:
    data = read_dataspec(f"amazon:{AMAZON / 'meta_Tiny.json'}?ratings={AMAZON / 'Tiny.csv'}")
    assert (data.name, data.items.height, data.events.height) == ("Tiny", 4, 3)
    only_ratings = read_dataspec(f"amazon:{AMAZON / 'Tiny.csv'}")
    assert (only_ratings.items.height, only_ratings.events.height) == (0, 3)


def test_ratings_with_a_header_line(tmp_path) -> None:
    f = tmp_path / "Books.csv"
    f.write_text("item,user,rating,timestamp\nB1,U1,4.0,1005177600\n")
    data = read_dataspec(f"amazon:{f}")
    assert data.events.select("item_id", "user_id", "value").rows() == [("B1", "U1", 4.0)]


def test_broken_meta_and_ratings(tmp_path) -> None:
    (tmp_path / "meta_Bad.json").write_text(
        '{"asin": "B1", "title": "Fine", "price": "$3.00"}\n'
        '{"asin": "B2", "title": "Refund", "price": "-$5.00"}\n'
        '{"asin": "", "title": "No id"}\n'
        '{"asin": "B4", "title": "Cut", "price": \n'
    )
    (tmp_path / "Bad.csv").write_text("B1,U1,5.0,1005177600\nB2,U2,4.0,yesterday\nB1,,3.0,1005177600\n")
    # `fail` names the first bad line of the first file read with one, whichever check found it
    with pytest.raises(DataError, match=r"meta_Bad\.json:2: items field 'price': negative price"):
        read_dataspec(f"amazon:{tmp_path}")
    data = read_dataspec(f"amazon:{tmp_path}", on_error="skip")
    assert data.accounting()["items"] == {"total": 4, "loaded": 1, "rejected": 3}
    assert data.accounting()["events"] == {"total": 3, "loaded": 1, "rejected": 2}
    messages = sorted(r.message().split("/")[-1] for r in data.log.rejects)
    assert messages[:2] == [
        "Bad.csv:2: events field 'timestamp': bad timestamp 'yesterday'",
        "Bad.csv:3: events field 'user_id': missing user id",
    ]
    assert re.fullmatch(r"meta_Bad\.json:2: items field 'price': negative price -5(\.0+)?", messages[2])
    assert messages[3:] == [
        "meta_Bad.json:3: items field 'item_id': missing item id",
        "meta_Bad.json:4: items field '(line)': truncated JSON line",
    ]


@pytest.mark.realdata
def test_real_magazine_subscriptions_counts() -> None:
    folder = shared_path("amazon-magazine-subscriptions")
    data = read_dataspec(f"amazon:{folder}")
    with gzip.open(folder / "meta_Magazine_Subscriptions.json.gz", "rt", encoding="utf-8") as fh:
        assert sum(1 for _ in fh) == 3_385  # lines; 1,065 asins repeat on identical lines
    assert data.accounting() == {
        "events": {"total": 89_689, "loaded": 89_689, "rejected": 0},
        "items": {"total": 2_320, "loaded": 2_320, "rejected": 0},
        "users": {"total": 0, "loaded": 0, "rejected": 0},
    }
    ev, items = data.events, data.items
    assert (ev["user_id"].n_unique(), ev["item_id"].n_unique()) == (72_098, 2_428)
    assert set(ev["event_type"]) == {"rating"}
    assert ev["value"].value_counts().sort("value").rows() == [
        (1.0, 11_029), (2.0, 5_223), (3.0, 6_971), (4.0, 12_676), (5.0, 53_790)]
    rated = ev.select(pl.col("item_id").unique())
    assert rated.filter(pl.col("item_id").is_in(items["item_id"].implode())).height == 2_320  # as the README says
    assert items["item_id"].n_unique() == 2_320
    assert (items["title"] != "").sum() == 147  # the rest were HTML junk
    assert not items["title"].str.contains("<").any()
    assert items["price"].null_count() == 2_320  # the 18 non-empty prices are page fragments
    assert (items["description"] != "").sum() == 1_965
    assert items["categories"].list.first().unique().to_list() == ["Magazine Subscriptions"]
    attrs = [json.loads(a) for a in items["attributes"]]
    assert (sum("also_buy" in a for a in attrs), sum("also_view" in a for a in attrs)) == (1_056, 1_302)
