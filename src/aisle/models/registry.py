"""Every servable recommender by name: a plain dict, so what exists is visible in one place.

Why no plugin discovery or import magic: the registry is what `aisle evaluate`, the CLI and the contract test
suite iterate over, and a model missing here is a model nobody can ask for — adding one is one line, and
`tests/contract/test_models.py` then holds it to the same contract as every other entry. Importing this
module imports no heavy library: `implicit` and the sentence encoder load when a model is fitted.
"""

from __future__ import annotations

from aisle.models.base import Recommender
from aisle.models.content import ContentSimilarity
from aisle.models.ease import EASE
from aisle.models.fbt import FrequentlyBoughtTogether
from aisle.models.knn import ItemKNN, UserKNN
from aisle.models.markov import MarkovChain
from aisle.models.mf import ALS, BPR
from aisle.models.popularity import Popularity, Trending
from aisle.models.sequential import GRU4Rec, SASRec
from aisle.models.twotower import TwoTower

MODELS: dict[str, type[Recommender]] = {
    "pop": Popularity,
    "trending": Trending,
    "itemknn": ItemKNN,
    "userknn": UserKNN,
    "ease": EASE,
    "als": ALS,
    "bpr": BPR,
    "markov": MarkovChain,
    "fbt": FrequentlyBoughtTogether,
    "content": ContentSimilarity,
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "twotower": TwoTower,
}
