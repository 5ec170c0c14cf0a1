"""Candidate-source kinds by name: a plain dict, like the model registry, so what exists is visible in one place.

Adding a kind is one file with a `CandidateSource` subclass plus one line here; configurations name it in
`SourceSpec.kind`, and the pipeline, the bundle and the runtime need no change.
"""

from __future__ import annotations

from aisle.pipeline.sources.base import CandidateSource, Contributions, Describe, SourceBatch, Window, top_n
from aisle.pipeline.sources.item_to_item import (
    BoughtTogetherSource,
    ContentSource,
    ItemToItemSource,
    neighbour_table,
)
from aisle.pipeline.sources.trending import TrendingSource
from aisle.pipeline.sources.user import SequentialSource, UserModelSource

SOURCE_KINDS: dict[str, type[CandidateSource]] = {
    "user": UserModelSource,
    "sequential": SequentialSource,
    "i2i": ItemToItemSource,
    "bought_together": BoughtTogetherSource,
    "content": ContentSource,
    "trending": TrendingSource,
}

__all__ = ["SOURCE_KINDS", "BoughtTogetherSource", "CandidateSource", "ContentSource", "Contributions", "Describe",
           "ItemToItemSource", "SequentialSource", "SourceBatch", "TrendingSource", "UserModelSource", "Window",
           "neighbour_table", "top_n"]
