"""Query understanding on REAL shopper queries (Home Depot search terms, WANDS queries), parsed against the
Home Depot catalog's vocabulary (41k titles; brands inferred from titles)."""

from __future__ import annotations

import pytest

from aisle.search.catalog import Catalog
from aisle.search.query import QueryParser
from aisle.search.retrieve import QueryTerms
from aisle.search.spell import SpellIndex
from tests.conftest import shared_path

# one xdist worker for the module: its module-scoped fixture is then built once, not once per worker
pytestmark = [pytest.mark.realdata, pytest.mark.xdist_group("unit_realdata_queries")]


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    from aisle.data.readers import read_dataspec

    path = shared_path("homedepot-search-relevance/train_dev.csv.gz")
    cat = Catalog.from_items(read_dataspec(f"homedepot:{path}").items)
    return QueryParser(SpellIndex.from_words(cat.vocabulary_docs()), cat.normalized_values())


@pytest.fixture(scope="module")
def real_queries() -> set[str]:
    import gzip

    hd = shared_path("homedepot-search-relevance/train_dev.csv.gz")
    with gzip.open(hd) as f:
        text = f.read().decode("iso-8859-1")
    wands = shared_path("wands/query.csv").read_text().splitlines()[1:]
    return {line.rsplit(",", 2)[-2] for line in text.splitlines()[1:]} | {w.split("\t")[1] for w in wands}


@pytest.mark.parametrize(("query", "fixes"), [
    ("toliet seats", {"toliet": "toilet"}),
    ("ligt fixture covers", {"ligt": "light"}),
    ("miricale", {"miricale": "miracle"}),
    ("garden hose repir cuplings", {"repir": "repair", "cuplings": "couplings"}),
    ("foutains with brick look", {"foutains": "fountains"}),  # WANDS
    ("behr marquee paint", {}),  # known words are left alone
    ("blk 18x18 seat cushions", {}),  # too short to guess: an abbreviation, not a typo
])
def test_typos_corrected(parser: QueryParser, real_queries: set[str], query: str, fixes: dict[str, str]) -> None:
    assert query in real_queries
    assert parser.parse(query).corrections == fixes


def test_typo_in_a_brand_is_corrected_and_the_brand_recognised(parser: QueryParser) -> None:
    pq = parser.parse("milwakee m12 cordless heated jacket")
    assert pq.corrections == {"milwakee": "milwaukee"}
    assert pq.filters.brands == ["Milwaukee"]
    assert pq.did_you_mean == "milwaukee m12 cordless heated jacket"


@pytest.mark.parametrize(("query", "brand"), [
    ("behr marquee paint", "BEHR"),
    ("kohler whitehaven farmhouse kitchen sink", "KOHLER"),  # WANDS
    ("moen matte black hooks", "MOEN"),  # WANDS
])
def test_brands_recognised(parser: QueryParser, query: str, brand: str) -> None:
    assert parser.parse(query).filters.brands == [brand]


@pytest.mark.parametrize(("query", "normalized", "measures"), [
    ("1/2 inch hole saw bit", "1/2 in hole saw bit", ["1/2in"]),
    ("100 watt light bulb", "100 w light bulb", ["100w"]),
    ("1 1/2 inch hex head lag screws", "1-1/2 in hex head lag screws", ["1-1/2in"]),
    ("2x4x8 doug fir", "2 x 4 x 8 doug fir", ["2x4", "4x8"]),
    ("bar stool 24 inches height", "bar stool 24 in height", ["24in"]),  # WANDS
    ("7qt slow cooker", "7 qt slow cooker", ["7qt"]),  # WANDS
])
def test_units_normalised(parser: QueryParser, query: str, normalized: str, measures: list[str]) -> None:
    pq = parser.parse(query)
    assert pq.normalized == normalized
    assert QueryTerms.from_parsed(pq).measures == measures


@pytest.mark.parametrize(("query", "price_max", "rest"), [
    ("cabinet closet  $100", 100.0, "cabinet closet"),
    ("10 dollar mens gifts", 10.0, "mens gifts"),
])
def test_price_extracted(parser: QueryParser, real_queries: set[str], query: str, price_max: float,
                         rest: str) -> None:
    assert query in real_queries
    pq = parser.parse(query)
    assert pq.filters.price_max == price_max and pq.filters.price_min is None
    assert pq.corrected == rest


@pytest.mark.parametrize(("query", "color"), [
    ("black 5 drawer dresser by guilford", "black"),
    ("dark gray dresser", "dark gray"),
    ("chrome bathroom 4 light vanity light", "chrome"),
])
def test_colors_extracted_from_wands(parser: QueryParser, query: str, color: str) -> None:
    assert parser.parse(query).filters.attributes["color"] == [color]
