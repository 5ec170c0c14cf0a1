"""Query understanding on hand-written queries against a small hand-made catalog (no shared data needed)."""

from __future__ import annotations

import pytest

from aisle.search.catalog import Catalog
from aisle.search.query import QueryParser, extract_price
from aisle.search.spell import SpellIndex
from aisle.types import Item, items_frame

ITEMS = [
    Item("1", "Nike Air Zoom running shoes, black", brand="Nike", categories=("Footwear", "Running shoes"),
         price=120.0, attributes={"color": "black", "size": "10"}),
    Item("2", "Adidas Ultraboost running shoes, white", brand="Adidas", categories=("Footwear", "Running shoes"),
         price=180.0, attributes={"color": "white", "size": "9"}),
    Item("3", "Hampton Bay 52 in. ceiling fan with light, brushed nickel", brand="Hampton Bay",
         categories=("Lighting", "Ceiling fans"), price=99.0, attributes={"color": "brushed nickel"}),
    Item("4", "Philips 60-Watt equivalent A19 LED light bulb (4-pack)", brand="Philips",
         categories=("Lighting", "Light bulbs"), price=12.0),
    Item("5", "KOHLER elongated toilet seat, white", brand="KOHLER", categories=("Bath", "Toilet seats"),
         price=45.0, attributes={"color": "white"}),
    Item("6", "Samsung 28 cu. ft. French door refrigerator, stainless steel", brand="Samsung",
         categories=("Appliances", "Refrigerators"), price=1899.0, attributes={"color": "stainless steel"}),
    Item("7", "Dish washer safe deck stain cleaner", brand="BEHR", categories=("Paint", "Deck stain"), price=25.0),
    Item("8", "Bosch 24 in. dishwasher, stainless steel", brand="Bosch", categories=("Appliances", "Dishwashers"),
         price=649.0),
]


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    cat = Catalog.from_items(items_frame(ITEMS))
    return QueryParser(SpellIndex.from_words(cat.vocabulary_docs()), cat.normalized_values())


@pytest.mark.parametrize(("text", "lo", "hi", "rest"), [
    ("running shoes under $50", None, 50.0, "running shoes"),
    ("rug less than 100 dollars", None, 100.0, "rug"),
    ("lamp $20-$40", 20.0, 40.0, "lamp"),
    ("lamp $20 to $40", 20.0, 40.0, "lamp"),
    ("tv over 200", 200.0, None, "tv"),
    ("boots 50 dollars or less", None, 50.0, "boots"),
    ("chair between 10 and 20 dollars", 10.0, 20.0, "chair"),
    ("phone uder $1000", None, 1000.0, "phone"),  # a typo of the price word
    ("under cabinet lighting", None, None, "under cabinet lighting"),  # no number: not a price
    ("under 30 in vanity", None, None, "under 30 in vanity"),  # a size, not a price
    ("2-4 ft hose", None, None, "2-4 ft hose"),  # a range without a currency is not a price
    ("cabinet closet $100", None, 100.0, "cabinet closet"),  # a lone amount is a budget
    ("10 dollar mens gifts", None, 10.0, "mens gifts"),
    ("$ hole saw", None, None, "$ hole saw"),
])
def test_price_extraction(text: str, lo: float | None, hi: float | None, rest: str) -> None:
    got_lo, got_hi, got_rest, _ = extract_price(text)
    assert (got_lo, got_hi, got_rest) == (lo, hi, rest)


def test_typo_is_corrected_and_original_kept(parser: QueryParser) -> None:
    pq = parser.parse("ceiling fan with ligt")
    assert pq.corrections == {"ligt": "light"}
    assert pq.corrected == "ceiling fan with light"
    assert pq.did_you_mean == "ceiling fan with light"
    assert pq.original == "ceiling fan with ligt"


def test_vocabulary_and_english_words_are_never_corrected(parser: QueryParser) -> None:
    assert parser.parse("nike running shoes").corrections == {}
    assert parser.parse("cheap toilet seat").corrections == {}  # "cheap" is English, not a typo of "chea.."


def test_units_are_normalised(parser: QueryParser) -> None:
    assert parser.parse('60 watt LED bulb').normalized == "60 w led bulb"
    assert parser.parse('52" ceiling fan').normalized == "52 in ceiling fan"
    assert parser.parse("28 cubic feet fridge").normalized == "28 cu ft fridge"


def test_brand_color_category_and_price(parser: QueryParser) -> None:
    pq = parser.parse("black nike running shoes under $150")
    assert pq.filters.brands == ["Nike"]
    assert pq.filters.attributes["color"] == ["black"]
    assert pq.filters.categories == ["Running shoes"]
    assert pq.filters.price_max == 150.0
    assert pq.residual == ""


def test_fuzzy_brand_through_spelling(parser: QueryParser) -> None:
    pq = parser.parse("hamptn bay fan")
    assert pq.corrections == {"hamptn": "hampton"}
    assert pq.filters.brands == ["Hampton Bay"]


def test_multiword_color_and_size(parser: QueryParser) -> None:
    pq = parser.parse("brushed nickel ceiling fan")
    assert pq.filters.attributes["color"] == ["brushed nickel"]
    pq = parser.parse("running shoes size 10")
    assert pq.filters.attributes["size"] == ["10"]
    assert pq.residual == ""


def test_synonyms_and_compounds_expand(parser: QueryParser) -> None:
    assert "refrigerator" in parser.parse("fridge").expansions
    assert "dishwasher" in parser.parse("dish washer").expansions  # joined form is in the catalog


def test_to_json_round_trips_the_essentials(parser: QueryParser) -> None:
    d = parser.parse("white toilet seat under $50").to_json()
    assert d["filters"] == {"price_max": 50.0, "categories": ["Toilet seats"], "attributes": {"color": ["white"]}}
    assert d["did_you_mean"] is None
