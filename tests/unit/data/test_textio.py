"""textio.read_split_lines: header-less lines split by Polars, every bad line rejected with its number."""

from __future__ import annotations

import pytest

from aisle.data.textio import MAX_RECORD_LINES, quote_open, read_delimited, read_split_lines
from aisle.data.validation import DataError, RejectLog

NAMES = ("user_id", "item_id", "rating")


def test_multi_char_separator_wrong_field_counts_and_undecodable_line(tmp_path) -> None:
    f = tmp_path / "ratings.dat"
    f.write_bytes(b"u1::i1::5\n"
                  b"u2::i2\n"              # one field short: names the first missing one
                  b"\n"                    # blank: ignored, not counted
                  b"u3::caf\xe9::4\n"      # not UTF-8
                  b"u4::i4::3::x\n"        # one field too many: names the last one
                  b"u5:: ::4\r\n")         # a blank field is null; CRLF is fine
    log = RejectLog(on_error="skip")
    df = read_split_lines(f, names=NAMES, sep="::", table="events", log=log)
    assert df.columns == [*NAMES, "_line"]
    assert df.rows() == [("u1", "i1", "5", 1), ("u5", None, "4", 6)]
    assert [(r.line, r.field, r.reason) for r in sorted(log.rejects, key=lambda r: r.line)] == [
        (2, "rating", "truncated row: expected 3 fields, got 2"),
        (4, "(line)", "not valid utf-8: byte 0xe9 at column 8 (set the file's encoding, e.g. ?encoding=latin-1)"),
        (5, "rating", "too many fields: expected 3 fields, got 4"),
    ]
    assert log.totals["events"] == df.height + len(log.rejects) == 5


def test_whitespace_runs_and_fail_names_the_line(tmp_path) -> None:
    f = tmp_path / "cart.txt"
    f.write_text("1 10\n\t2   20 \n3\n")
    log = RejectLog(on_error="skip")
    assert read_split_lines(f, names=("user_id", "item_id"), table="events", log=log).rows() == [
        ("1", "10", 1), ("2", "20", 2)]
    with pytest.raises(DataError, match=r"cart\.txt:3: events field 'item_id': truncated row: expected 2 fields"):
        read_split_lines(f, names=("user_id", "item_id"), table="events", log=RejectLog())


def test_quote_open_follows_rfc_4180() -> None:
    assert quote_open('a,"b', ",")
    assert not quote_open('a,"b,c"', ",")
    assert not quote_open('a,"b "" c",d', ",")  # a doubled quote inside a quoted field
    assert not quote_open('a,5" screen,b', ",")  # a quote inside an unquoted field is a character
    assert quote_open('x ""', ",", inside=True)  # continuing a quoted field that stays open
    assert not quote_open('end",b', ",", inside=True)


def test_crlf_file_keeps_its_quoted_line_break_and_counts_every_line(tmp_path) -> None:
    f = tmp_path / "crlf.csv"
    f.write_bytes(b'\xef\xbb\xbfid,text\r\n1,"two\r\nlines"\r\n2,"open\r\n3,plain\r\n')
    log = RejectLog(on_error="skip")
    df = read_delimited(f, table="items", log=log)
    assert df.columns == ["id", "text", "_line"]  # the BOM is not part of the first name
    assert df.rows() == [("1", "two\r\nlines", 2), ("3", "plain", 5)]
    assert [(r.line, r.reason.split(":")[0]) for r in log.rejects] == [(4, "unclosed quote")]
    assert log.totals["items"] == 3


def test_a_quote_open_for_too_many_lines_rejects_its_line_only(tmp_path) -> None:
    f = tmp_path / "long.csv"
    rows = [f"{i},x" for i in range(MAX_RECORD_LINES + 5)]
    f.write_text("id,text\n" + '0,"never closed\n' + "\n".join(rows) + "\n")
    log = RejectLog(on_error="skip")
    df = read_delimited(f, table="items", log=log)
    assert [r.line for r in log.rejects] == [2] and df.height == len(rows) and df["_line"][0] == 3
