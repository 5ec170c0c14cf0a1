"""The pipeline's configuration: which candidate sources, and the knobs shared by all of them.

Strict on purpose: a source of an unknown kind or model, or a key nobody reads, is an error that names it and
lists what is accepted. Before, an unknown `kind` silently became trending and an unimportable model was
dropped without a word, so a typo in a config file changed what was served and nobody saw it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aisle.models.registry import MODELS


class PipelineConfigError(ValueError):
    """A pipeline configuration names a kind, model or key that does not exist (the message lists the valid ones)."""


def _known(what: str, got: Any, accepted: Any) -> None:
    if got not in accepted:
        raise PipelineConfigError(f"unknown {what} {got!r}; accepted: {', '.join(map(str, accepted))}")


def _check_keys(what: str, data: dict[str, Any], cls: type) -> None:
    names = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise PipelineConfigError(f"unknown {what} key {', '.join(map(repr, unknown))}; accepted: {', '.join(names)}")


@dataclass(frozen=True)
class SourceSpec:
    """One candidate source: a registry `model` used as a source of `kind` (see `aisle.pipeline.sources`)."""

    key: str
    model: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    refit: bool = True  # False: the model reads no events (content), so one fit serves both stages
    # True: fitted once, on the events without each user's last one (the combiner's training stage), and served as
    # fitted. A deep source then costs one fit instead of two in a nightly refit, and the combiner learns how much
    # to trust exactly the model it serves with; the price is that each user's newest event is history, not a
    # training example, until the next refit.
    fit_once: bool = False
    window: int | None = None  # item-to-item: last items used (default: the pipeline's window)
    decay: float | None = None  # item-to-item: weight of the item d steps before the last, decay ** d
    # added to the pipeline's seed for this source's model: two sources of the same model and parameters with
    # different offsets are two independently initialised fits, an ensemble the combiner weighs (same offset: the
    # same model twice)
    seed_offset: int = 0

    def __post_init__(self) -> None:
        from aisle.pipeline.sources import SOURCE_KINDS

        _known("source kind", self.kind, SOURCE_KINDS)
        _known("model", self.model, MODELS)
        accepted = SOURCE_KINDS[self.kind].models
        if accepted is not None and self.model not in accepted:
            raise PipelineConfigError(f"source {self.key!r}: kind {self.kind!r} does not take model "
                                      f"{self.model!r}; accepted: {', '.join(accepted)}")
        if not self.key:
            raise PipelineConfigError("a source needs a non-empty key")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceSpec:
        _check_keys("source", data, cls)
        return cls(**data)


DEFAULT_SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("sasrec", "sasrec", "sequential", {"max_seconds": 120.0, "progress": False}),
    SourceSpec("als", "als", "user", {"factors": 64}),
    SourceSpec("itemknn", "itemknn", "i2i", decay=0.7),
    SourceSpec("markov", "markov", "i2i", window=5, decay=0.5),
    SourceSpec("fbt", "fbt", "bought_together"),
    SourceSpec("trending", "trending", "trending"),
)
#: Add to `sources` for text similarity between items: MiniLM over descriptions costs ~0.2 s per item on a 2-core
#: CPU, so it is opt-in; cold start works without it (search vectors, else shared category and brand).
CONTENT_SOURCE = SourceSpec("content", "content", "content", refit=False)


RANKERS: tuple[str, ...] = ("combiner", "impressions")


@dataclass(frozen=True)
class PipelineConfig:
    sources: tuple[SourceSpec, ...] = DEFAULT_SOURCES
    per_source: int = 50
    neighbours: int = 50
    window: int = 20
    decay: float = 0.8
    trending: int = 30
    max_train_queries: int = 5_000
    # how many of each user's last events the combiner learns from, each a query on the history before it (the
    # sources' first fit leaves them all out; a user keeps at least two events): 1 suits short histories (Amazon's
    # ~9 events per user), more gives a store of few users with long histories more queries (RESULTS.md, issue 24)
    train_positions: int = 1
    rounds: int = 80  # the combiner's boosting rounds; with early_stop, the most it may run
    holdout_fraction: float = 0.2  # of the combiner's queries, to choose between it and the best single source
    # > 0: those held-out queries also choose the combiner's number of rounds (LightGBM early stopping on their
    # NDCG@10 with this patience, in rounds); 0: it runs `rounds`
    early_stop: int = 0
    # the combiner's LightGBM settings over `aisle.pipeline.combiner.LGB_PARAMS` (keys: combiner.TUNABLE)
    lightgbm: dict[str, Any] = field(default_factory=dict)
    # the combiner as `bags` LightGBM models, each on a random `bag_fraction` of its training queries, scores
    # averaged (1: one model on all of them)
    bags: int = 1
    bag_fraction: float = 0.8
    seed: int = 0
    # optional feature groups of the combiner (aisle.pipeline.features.GROUPS); "tags" measured better on Amazon
    # Beauty's validation targets (RESULTS.md) and costs nothing where the catalog has no tags
    features: tuple[str, ...] = ("tags",)
    # what orders the candidates: "combiner" (learned from next-item hold-outs) or "impressions" (learned from what
    # shoppers were shown and clicked or ignored, `aisle.implearn`; the combiner ranks until one is trained)
    ranker: str = "combiner"

    def __post_init__(self) -> None:
        from aisle.pipeline.features import GROUPS

        _known("ranker", self.ranker, RANKERS)
        for group in self.features:
            _known("feature group", group, GROUPS)
        from aisle.pipeline.combiner import settings_problem

        problem = settings_problem(params=self.lightgbm, bags=self.bags, bag_fraction=self.bag_fraction,
                                   early_stop=self.early_stop)
        if problem:
            raise PipelineConfigError(problem)
        if self.train_positions < 1:
            raise PipelineConfigError(f"train_positions must be at least 1; got {self.train_positions}")
        keys = [s.key for s in self.sources]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise PipelineConfigError(f"source keys must be unique; repeated: {', '.join(twice)}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "sources": [s.to_json() for s in self.sources], "features": list(self.features)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineConfig:
        _check_keys("pipeline", data, cls)
        sources = data.get("sources")
        out = {**data}
        # a configuration saved before feature groups existed trained its combiner without them
        out["features"] = tuple(data.get("features", ()))
        if sources is not None:
            out["sources"] = tuple(s if isinstance(s, SourceSpec) else SourceSpec.from_json(s) for s in sources)
        return cls(**out)

    def updated(self, overrides: dict[str, Any]) -> PipelineConfig:
        """This configuration with `overrides` (a `[pipeline]` table of a config file) applied, checked."""
        return PipelineConfig.from_json({**self.to_json(), **overrides})


__all__ = ["CONTENT_SOURCE", "DEFAULT_SOURCES", "RANKERS", "PipelineConfig", "PipelineConfigError", "SourceSpec"]
