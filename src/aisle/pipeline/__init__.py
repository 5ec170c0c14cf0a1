"""The recommendation pipeline: candidate sources (typed components, `aisle.pipeline.sources`) -> merge -> a named
feature frame (`features`) -> the learned combiner (`combiner`), configured by `config` and run by `core`.

Why a pipeline rather than one model: each source is good at one thing (the session's order, long-term taste,
co-views, baskets, text, what is hot) and a combiner trained on held-out next items learns how much to trust
each for each shopper. The runtime (`aisle.serve.runtime`) talks to it through `candidates`, `rank`, `explain`,
`neighbours` and `with_items` only.
"""

from aisle.pipeline.combiner import Combiner
from aisle.pipeline.config import (
    CONTENT_SOURCE,
    DEFAULT_SOURCES,
    PipelineConfig,
    PipelineConfigError,
    SourceSpec,
)
from aisle.pipeline.core import (
    Pipeline,
    as_model,
    compare,
    extend_attributes,
    hold_out_last,
    hold_out_tail,
    item_attributes,
)
from aisle.pipeline.features import GROUPS, Candidates, FeatureFrame, ItemFacts
from aisle.pipeline.sources import SOURCE_KINDS, CandidateSource, Contributions, top_n

__all__ = ["CONTENT_SOURCE", "DEFAULT_SOURCES", "GROUPS", "SOURCE_KINDS", "CandidateSource", "Candidates", "Combiner",
           "Contributions", "FeatureFrame", "ItemFacts", "Pipeline", "PipelineConfig", "PipelineConfigError",
           "SourceSpec", "as_model", "compare", "extend_attributes", "hold_out_last", "hold_out_tail",
           "item_attributes", "top_n"]
