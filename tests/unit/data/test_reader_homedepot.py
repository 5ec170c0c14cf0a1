from __future__ import annotations

import json

import pytest

from aisle.data.readers import read_dataspec
from aisle.data.validation import DataError
from tests.conftest import FIXTURES, shared_path

TINY = FIXTURES / "homedepot" / "tiny.csv"
HEADER = "id,product_uid,product_title,search_term,relevance\n"


def test_fixture_judgments_one_per_row() -> None:
    data = read_dataspec(f"homedepot:{TINY}")
    assert data.extras["judgments"].rows() == [
        ("2", "angle bracket", "100001", 3.0),
        ("3", "l bracket", "100001", 2.5),
        ("9", "deck over", "100002", 3.0),
        ("16", "rain shower head", "100005", 2.33),
        ("17", "shower only faucet", "100005", 2.67),
        ("1060", "galvanized framing nails", "100179", 1.25),
    ]
    assert data.extras["judgments"].columns == ["pair_id", "query", "item_id", "relevance"]
    assert data.events.height == 0
    assert data.accounting()["judgments"] == {"total": 6, "loaded": 6, "rejected": 0}


def test_fixture_items_one_per_product_latin1_decoded() -> None:
    data = read_dataspec(f"homedepot:{TINY}")
    items = {r["item_id"]: r for r in data.items.to_dicts()}
    assert list(items) == ["100001", "100002", "100005", "100179"]
    assert items["100179"]["title"] == (
        "Paslode 3 in. x 0.120-Gauge 30\u00e5\u00a1 Galvanized Ring Shank Paper Tape Framing Nails (2,000-Pack)")
    assert items["100005"]["title"] == "Delta Vero Shower Trim Kit in Chrome (Valve Not Included)"  # latest row
    assert json.loads(items["100005"]["attributes"]) == {
        "other_titles": ["Delta Vero 1-Handle Shower Only Faucet Trim Kit in Chrome (Valve Not Included)"]}
    assert items["100001"]["attributes"] == "{}"
    assert data.accounting()["items"] == {"total": 4, "loaded": 4, "rejected": 0}


def test_utf8_encoding_option_rejects_the_latin1_line() -> None:
    with pytest.raises(DataError, match=r"tiny\.csv:7: judgments field '\(line\)': not valid utf-8: byte 0xe5"):
        read_dataspec(f"homedepot:{TINY}?encoding=utf-8")
    data = read_dataspec(f"homedepot:{TINY}?encoding=utf-8", on_error="skip")
    assert data.accounting()["judgments"] == {"total": 6, "loaded": 5, "rejected": 1}
    assert data.accounting()["items"] == {"total": 3, "loaded": 3, "rejected": 0}


def test_relevance_must_be_a_number_in_range(tmp_path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(HEADER + "1,100,Hammer,hammer,3\n2,100,Hammer,claw hammer,4.5\n3,101,Saw,saw,abc\n"
                 "4,101,Saw,,2\n5,102,Drill,drill,\n6,,Nail,nail,1\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: judgments field 'relevance': relevance '4\.5' is not a number "
                                        r"in \[1, 3\]$"):
        read_dataspec(f"homedepot:{f}")
    data = read_dataspec(f"homedepot:{f}", on_error="skip")
    assert data.accounting()["judgments"] == {"total": 6, "loaded": 1, "rejected": 5}
    assert data.accounting()["items"] == {"total": 3, "loaded": 3, "rejected": 0}
    assert [(r.line, r.field, r.reason) for r in data.log.rejects] == [
        (3, "relevance", "relevance '4.5' is not a number in [1, 3]"),
        (4, "relevance", "relevance 'abc' is not a number in [1, 3]"),
        (5, "query", "missing query"),
        (6, "relevance", "missing relevance"),
        (7, "item_id", "missing item id"),
    ]


@pytest.mark.realdata
def test_real_train_dev_counts_and_latin1_row() -> None:
    data = read_dataspec(f"homedepot:{shared_path('homedepot-search-relevance/train_dev.csv.gz')}")
    j = data.extras["judgments"]
    assert data.accounting()["judgments"] == {"total": 51_963, "loaded": 51_963, "rejected": 0}
    assert data.accounting()["items"] == {"total": 41_127, "loaded": 41_127, "rejected": 0}
    assert (j.height, j["query"].n_unique(), j["item_id"].n_unique(), j["pair_id"].n_unique()) == (
        51_963, 8_234, 41_127, 51_963)
    assert (j["relevance"].min(), j["relevance"].max()) == (1.0, 3.0)
    assert j.filter(j["relevance"] == 3.0).height == 13_410
    # line 213 holds the bytes 0xe5 0xa1 (a degree sign in the source): read as latin-1
    title = data.items.filter(data.items["item_id"] == "100179")["title"].item()
    assert title == ("Paslode 3 in. x 0.120-Gauge 30\u00e5\u00a1 Galvanized Ring Shank Paper Tape Framing Nails "
                     "(2,000-Pack)")
    assert data.items["attributes"].str.contains("other_titles").sum() == 11
