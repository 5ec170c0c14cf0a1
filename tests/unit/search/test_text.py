"""The shared analyzer: units, fractions, measures and dimensions reduce to the same tokens on both sides."""

from __future__ import annotations

import pytest

from aisle.search.text import analyze, fold, normalize


@pytest.mark.parametrize(("raw", "norm"), [
    ("LED 60-Watt A19 Bulb", "led 60 w a19 bulb"),
    ("60w bulb", "60 w bulb"),
    ("60 watt bulb", "60 w bulb"),
    ('1/2" PVC', "1/2 in pvc"),
    ("1/2 in. PVC", "1/2 in pvc"),
    ("1/2 inch pvc", "1/2 in pvc"),
    ("1 1/2 inch drain", "1-1/2 in drain"),
    ("8' ladder", "8 ft ladder"),
    ("8 ft. ladder", "8 ft ladder"),
    ("10 cu. ft. fridge", "10 cu ft fridge"),
    ("1,000 sq. ft.", "1000 sq ft"),
    ("5 gal. bucket", "5 gal bucket"),
    ("2x4x8", "2 x 4 x 8"),
    ("Café ½ in", "cafe 1/2 in"),
    ("in the house", "in the house"),  # "in" without a number is a word
])
def test_normalize_units(raw: str, norm: str) -> None:
    assert normalize(raw) == norm


def test_measure_tokens_meet_across_spellings() -> None:
    assert "60w" in analyze("LED 60-Watt Equivalent") and "60w" in analyze("60 watt")
    assert "1/2in" in analyze('1/2" copper') and "1/2in" in analyze("1/2 inch copper")
    assert "2x4" in analyze("2 in. x 4 in. x 8 ft. Stud") and "2x4" in analyze("2x4 stud")
    assert "36x80" in analyze("36 in. x 80 in. door")


def test_stems_and_stopwords() -> None:
    assert analyze("the doors with hinges") == ["door", "hing"]
    assert analyze("") == []


def test_fold_strips_accents_and_entities() -> None:
    assert fold("Painter&#39;s  Touch Café") == "painter's touch cafe"
