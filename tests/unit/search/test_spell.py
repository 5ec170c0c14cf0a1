"""Spelling correction against a catalog vocabulary."""

from __future__ import annotations

from aisle.search.spell import SpellIndex, damerau

DOCS = [
    "led light bulb 60 w", "light bulb soft white", "toilet seat elongated", "toilet flapper", "deck stain",
    "deck screws", "over the range microwave", "wood stakes", "wood stakes 12 in", "garden stakes",
    "speaker wire", "miracle gro potting soil", "miracle gro plant food", "garage door opener", "chandelier crystal",
]


def index() -> SpellIndex:
    return SpellIndex.from_words(d.split() for d in DOCS)


def test_damerau() -> None:
    assert damerau("toliet", "toilet", 2) == 1  # transposition
    assert damerau("ligt", "light", 2) == 1
    assert damerau("miricale", "miracle", 2) == 2
    assert damerau("abc", "xyz", 1) == 2  # beyond the limit: limit + 1
    assert damerau("dcabbdd", "cacbdbcc", 3) == 4  # always limit + 1 beyond it, however far
    assert damerau("ca", "abc", 3) == 3  # optimal string alignment: a transposed pair is not edited again


def test_corrects_typos() -> None:
    sp = index()
    assert sp.correct("ligt") == "light"
    assert sp.correct("toliet") == "toilet"
    assert sp.correct("miricale") == "miracle"
    assert sp.correct("chandilier") == "chandelier"


def test_never_corrects_known_words_numbers_or_short_words() -> None:
    sp = index()
    for w in ("light", "deck", "60", "w", "in", "ab"):
        assert sp.correct(w) is None


def test_splits_joined_words() -> None:
    sp = SpellIndex.from_words([["deck", "over"]] * 3 + [["garage", "door"]] * 3)
    assert sp.correct("deckover") == "deck over"
    assert sp.correct("garagedoor") == "garage door"


def test_context_picks_the_candidate_that_cooccurs() -> None:
    sp = SpellIndex.from_words([["wood", "stakes"], ["speaks"], ["speaks", "loud"], ["speaks", "loud"]])
    assert sp.correct("steaks") == "speaks"  # nearest without context
    assert sp.correct("steaks", context=["wood"]) == "stakes"


def test_save_load(tmp_path) -> None:
    sp = index()
    sp.save(tmp_path / "spell")
    back = SpellIndex.load(tmp_path / "spell")
    assert back.freq == sp.freq
    assert back.correct("ligt") == "light"
    assert back.cooccurrence("stakes", ["wood"]) == sp.cooccurrence("stakes", ["wood"]) == 2
