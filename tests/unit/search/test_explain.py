"""How a search hit's explanation reads: the words (not their index stems), the fields, the meaning, the filters
understood, the shopper's boosts; and a hit with nothing matched (a category page) still says why."""

from __future__ import annotations

from aisle.search.explain import explain_hit, filter_phrases


def test_words_fields_meaning_filters_and_boosts() -> None:
    hit = {"brand": "Northpeak", "category": ["Outdoors", "Footwear", "Hiking boots"],
           "matched": {"fields": ["title", "brand", "attributes"], "terms": ["hike", "boot"], "dense": True,
                       "dense_similarity": 0.6123}}
    why = explain_hit(hit, query="waterproof hiking boots", filters={"price_max": 150.0, "available": True},
                      affinity={"brands": {"Northpeak": 1.0, "Other": 0.5}, "categories": {"Hiking boots": 0.4}})
    assert why["type"] == "search" and why["matched_words"] == ["hiking", "boots"]
    assert why["fields"] == ["title", "brand", "details"] and why["dense_similarity"] == 0.6123
    assert why["filters"] == ["under $150", "in stock"]
    assert [(b["on"], b["value"]) for b in why["boosts"]] == [("brand", "Northpeak"), ("category", "Hiking boots")]
    assert why["text"] == ("Matches “hiking boots” in the title; and words in the brand, details; close in meaning to "
                           "your search (similarity 0.61); you often choose Northpeak; you often shop Hiking boots; "
                           "fits under $150, in stock")


def test_a_hit_with_nothing_matched_still_says_why() -> None:
    why = explain_hit({"matched": {"fields": [], "terms": [], "dense": False}}, query="",
                      filters={"categories": ["Tents"]})
    assert why["text"] == "Popular among what you asked for; fits Tents" and why["boosts"] == []


def test_filter_phrases() -> None:
    assert filter_phrases({"price_min": 20.0, "price_max": 40.0, "brands": ["Acme"], "exclude_brands": ["Zed"],
                           "attributes": {"color": ["blue"], "capacity": ["64GB"]}}) == \
        ["$20-$40", "brand Acme", "not Zed", "blue", "capacity 64GB"]
