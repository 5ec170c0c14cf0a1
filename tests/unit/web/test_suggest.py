"""Search-box suggestions: prefix completion over categories, brands and titles; corrections when none complete."""

from __future__ import annotations

from dataclasses import dataclass, field

from aisle.web.suggest import Phrase, Suggester, suggest_json

PHRASES = [
    Phrase("Headphones", "category", 9.0, items=3),
    Phrase("Headlamps", "category", 4.0, items=2),
    Phrase("Voltix", "brand", 5.0, items=2),
    Phrase("Voltix Aurora wired over-ear headphones, black", "item", 3.0, "i1", kind_words=("headphones",)),
    Phrase("Voltix Juno in-ear headphones, white", "item", 1.0, "i2", kind_words=("headphones",)),
    Phrase("Corefit Hearth dumbbells, 30 lb", "item", 8.0, "i3", kind_words=("dumbbells",)),
    Phrase("Northpeak Quest headlamp, 200 lumens", "item", 2.0, "i4", kind_words=("headlamps",)),
]


def test_every_word_prefixes_a_word_of_the_phrase_in_any_order() -> None:
    s = Suggester(PHRASES)
    assert [p.item_id for p in s.complete("headph volt")] == ["i1", "i2"]
    assert [p.item_id for p in s.complete("volt HEADPH")] == ["i1", "i2"]
    assert s.complete("headphones nothing") == []
    assert s.complete("   ") == []


def test_categories_then_brands_then_items_and_named_kind_before_popularity() -> None:
    out = Suggester(PHRASES).complete("hea", k=6)
    assert [p.kind for p in out][:2] == ["category", "category"]
    assert out[0].text == "Headphones"  # more popular category first
    items = [p.item_id for p in out if p.kind == "item"]
    # "hea" names headphones/headlamps: those items come before the more popular "Hearth" dumbbells
    assert items[-1] == "i3" and set(items[:3]) == {"i1", "i2", "i4"}
    assert len(Suggester(PHRASES).complete("hea", k=3)) == 3


@dataclass
class _Parsed:
    corrected: str
    corrections: dict[str, str] = field(default_factory=dict)


class _Engine:
    def understand(self, q: str) -> tuple[_Parsed, None]:
        fixed = q.replace("hedphones", "headphones")
        return _Parsed(fixed, {"hedphones": "headphones"} if fixed != q else {}), None


def test_a_spelling_correction_when_nothing_completes() -> None:
    out = suggest_json(Suggester(PHRASES), "hedphones", 4, _Engine())["suggestions"]
    assert out[0] == {"text": "headphones", "kind": "correction"}
    assert {"text": "Headphones", "kind": "category", "items": 3} in out and len(out) <= 4
    assert suggest_json(Suggester(PHRASES), "zzz", 4, _Engine())["suggestions"] == []
    assert suggest_json(Suggester(PHRASES), "volt", 4, None)["suggestions"][0]["kind"] == "brand"
