"""Search-box suggestions: prefix completion over categories, brands and titles; corrections when none complete."""

from __future__ import annotations

from dataclasses import dataclass, field

from aisle.web.suggest import Phrase, Suggester, suggest_json, words

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


def _upserts(rt, n: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """Upsert batch `n`: a new item in an existing category under a new brand, one retitled item, one made
    unavailable, one moved to another category and brand (what changes phrases and the weights of their names)."""
    rows = [rt.item_record(r) for r in range(10 * n, 10 * n + 4)]
    new = {**rows[0], "item_id": f"new-{n}", "title": f"zorbix{chr(97 + n)} kettle", "brand": f"Brandnew{n}"}
    retitled = {**rows[1], "title": f"quixel{chr(97 + n)} {rows[1]['title']}"}
    gone = {**rows[2], "available": False}
    moved = {**rows[3], "brand": rows[0]["brand"], "categories": rows[0]["categories"]}
    return [new, retitled, gone, moved]


def test_upserts_update_the_suggester_as_a_rebuild_would(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aisle.bundle import Bundle
    from aisle.config import Settings
    from aisle.data.synthetic import SyntheticConfig
    from aisle.pipeline import SourceSpec
    from aisle.serve.runtime import Runtime
    from tests.bundles import save_bundle, synthetic_shop

    shop = synthetic_shop(SyntheticConfig(n_items=300, n_users=100, n_events=3_000, seed=2))
    save_bundle(shop, [SourceSpec("trending", "trending", "trending")], tmp_path / "b", search=False)
    rt = Runtime(Bundle.load(tmp_path / "b"), Settings())
    base = rt.suggester
    queries = {w for p in base.phrases[:400] for w in words(p.text)[:2]} | {"zorbix", "quixel", "brandnew"}
    for n in range(3):
        rt = rt.with_upserts(_upserts(rt, n))
        rebuilt = Suggester.from_runtime(rt)

        def key(p: Phrase) -> tuple:  # type: ignore[type-arg]
            return p.kind, p.text, p.item_id, p.items, round(p.weight, 6), p.kind_words

        assert sorted(map(key, rt.suggester.phrases)) == sorted(map(key, rebuilt.phrases))
        for q in sorted(queries):
            assert [key(p) for p in rt.suggester.complete(q, 8)] == [key(p) for p in rebuilt.complete(q, 8)], q
    assert [p.item_id for p in rt.suggester.complete("zorbixb")] == ["new-1"]
    assert [(p.kind, p.text, p.items) for p in rt.suggester.complete("brandnew2")] == [("brand", "Brandnew2", 1)]
