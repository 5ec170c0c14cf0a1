"""Query types for per-type evaluation: where search is strong or weak, not just on average.

Why these four: they are the kinds of product query that general-purpose search gets wrong in different ways, and
each is read off what query understanding already found, so the definitions are simple and the same everywhere:

* `typo`: the spelling corrector changed a word ("ligt bulb");
* `unit`: the query gives a measure or a dimension, a bound unit token ("60 watt", "1/2 in. pvc", "2x4");
* `brand`: a brand of the catalog is recognised in the query ("moen faucet");
* `long_tail`: a long query (`LONG_WORDS` words or more) or one with a rare word (in at most `RARE_DF` titles):
  the needs a popular-query cache or a click model never sees.

A query may have several types, or none (`plain`).
"""

from __future__ import annotations

from aisle.search.lexical import LexicalIndex
from aisle.search.query import ParsedQuery
from aisle.search.retrieve import QueryTerms

TYPES: tuple[str, ...] = ("typo", "unit", "brand", "long_tail", "plain")
LONG_WORDS = 5
RARE_DF = 3


def classify(pq: ParsedQuery, terms: QueryTerms, lexical: LexicalIndex) -> tuple[str, ...]:
    """The types of one parsed query (see the module docstring), `("plain",)` when none applies."""
    out = []
    if pq.corrections:
        out.append("typo")
    if terms.measures:
        out.append("unit")
    if pq.filters.brands:
        out.append("brand")
    title = lexical.fields["title"]
    alpha = [t for t in dict.fromkeys(terms.tokens) if t[:1].isalpha()]
    if len(pq.corrected.split()) >= LONG_WORDS or any(title.df(t) <= RARE_DF for t in alpha):
        out.append("long_tail")
    return tuple(out) or ("plain",)
