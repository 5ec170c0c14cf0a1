"""Every servable recommender by name: a plain dict, so what exists is visible in one place.

Why no plugin discovery or import magic: the registry is what `aisle evaluate`, the CLI and the contract test
suite iterate over, and a model missing here is a model nobody can ask for — adding one is one line, and
`tests/contract/test_models.py` then holds it to the same contract as every other entry. Importing this
module imports no heavy library: `implicit` and the sentence encoder load when a model is fitted, and the deep
models (torch) are entries named "module:Class" that `MODELS` imports on first lookup, so a command that
only lists names or runs classic models never pays torch's import.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from aisle.models.base import Recommender
from aisle.models.content import ContentSimilarity
from aisle.models.ease import EASE
from aisle.models.fbt import FrequentlyBoughtTogether
from aisle.models.knn import ItemKNN, UserKNN
from aisle.models.markov import MarkovChain
from aisle.models.mf import ALS, BPR
from aisle.models.popularity import Popularity, Trending


class _Registry(MutableMapping[str, type[Recommender]]):
    """A dict of name -> class whose values may be "module:Class" strings, imported (once) when looked up."""

    def __init__(self, entries: dict[str, type[Recommender] | str]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> type[Recommender]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attr = entry.split(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry

    def __setitem__(self, name: str, cls: type[Recommender]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


MODELS: MutableMapping[str, type[Recommender]] = _Registry({
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
    "sasrec": "aisle.models.sequential:SASRec",
    "gru4rec": "aisle.models.sequential:GRU4Rec",
    "twotower": "aisle.models.twotower:TwoTower",
})

__all__ = ["MODELS"]
