"""What every candidate source is: a typed component the pipeline and the runtime talk to through methods only.

A source wraps one fitted registry model and answers, for a whole batch of queries at once, "which items, how
strongly, and because of which history item" (`Contributions`). Everything a kind does differently lives in its
own class: how it finds candidates, which neighbours it has for an item page, how it explains an item, what it
precomputes per known user, and what it can update from new events without a refit. The pipeline merges
contributions and never looks inside a source; the runtime asks sources for neighbours and explanations and
never reads their tables.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, Recommender, TrainData

if TYPE_CHECKING:
    from aisle.pipeline.config import PipelineConfig, SourceSpec
    from aisle.query import Query

_EMPTY_I = np.zeros(0, np.int64)
_EMPTY_F = np.zeros(0, np.float64)


@dataclass(frozen=True)
class Window:
    """The recent history of every query of a batch, flattened (what item-to-item sources read): for each entry,
    the query it belongs to, the item, and its distance from the end of that query's history (0 = the last)."""

    query: np.ndarray
    items: np.ndarray
    distance: np.ndarray

    @classmethod
    def of(cls, histories: list[np.ndarray], size: int) -> Window:
        tails = [h[-size:] for h in histories]
        lengths = np.fromiter((len(t) for t in tails), np.int64, len(tails))
        items = np.concatenate(tails) if lengths.sum() else _EMPTY_I
        ends = np.repeat(np.cumsum(lengths), lengths)
        return cls(np.repeat(np.arange(len(tails)), lengths), items.astype(np.int64),
                   ends - np.arange(len(items)) - 1)


@dataclass(frozen=True)
class SourceBatch:
    """A batch of queries as every source sees it. `histories` are item indices known to the pipeline (catalog
    items added since the bundle included); `model_histories` only the items the models were fitted on;
    `precomputed[key]` = (items, scores) of shape (batch, n) replaces running user source `key`."""

    users: np.ndarray
    histories: list[np.ndarray]
    model_histories: list[np.ndarray]
    window: Window
    precomputed: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.histories)

    def model_queries(self) -> QueryBatch:
        return QueryBatch(self.users, self.model_histories)


@dataclass(frozen=True)
class Contributions:
    """What one source proposes for a batch: one row per (query, item, anchor) with the source's score, the
    anchor (the history item a candidate came from, -1 when none: it explains the candidate) and the part of
    the score that came from the query's last item (`from_last`)."""

    query: np.ndarray
    item: np.ndarray
    score: np.ndarray
    anchor: np.ndarray
    from_last: np.ndarray

    @classmethod
    def empty(cls) -> Contributions:
        return cls(_EMPTY_I, _EMPTY_I, _EMPTY_F, _EMPTY_I, _EMPTY_F)

    @classmethod
    def of_lists(cls, items: np.ndarray, scores: np.ndarray) -> Contributions:
        """From (batch, n) item/score lists (-1 items are padding): no anchor, the whole score counts as recent."""
        query = np.repeat(np.arange(items.shape[0]), items.shape[1])
        ok = items.ravel() >= 0
        score = scores.ravel()[ok].astype(np.float64)
        return cls(query[ok], items.ravel()[ok].astype(np.int64), score, np.full(int(ok.sum()), -1, np.int64), score)

    def __len__(self) -> int:
        return len(self.item)


class Describe(Protocol):
    """How a source names things in an explanation (the runtime's catalog answers)."""

    def title(self, row: int) -> str | None: ...

    def item_id(self, row: int) -> str | None: ...

    def category(self, row: int) -> str | None: ...


class CandidateSource(ABC):
    """One kind of candidate source. Subclasses set `kind` (the registry name used in configurations) and
    `models` (the registry models the kind accepts; None: any)."""

    kind: ClassVar[str]
    models: ClassVar[tuple[str, ...] | None] = None
    per_user: ClassVar[bool] = False  # True: `precompute` gives per-user lists that serving reads for known users
    scores_items: ClassVar[bool] = False  # True: `score_items` scores any (query, item), not only its own top-N

    def __init__(self, spec: SourceSpec, config: PipelineConfig) -> None:
        self.spec, self.config = spec, config
        self.model: Any = None

    @property
    def key(self) -> str:
        return self.spec.key

    # ---- fitting and persistence ---------------------------------------------------------------------

    def fit(self, data: TrainData, *, seed: int = 0, refit: bool = False) -> Self:
        """Fit the model on `data` and derive what serving reads from it. `refit`: the pipeline's second fit, on
        the events with each user's held-out newest one put back; a model whose first fit chose its training
        length on that hold-out (early stopping) then trains that length on everything (`refit_overrides`)."""
        overrides = self.model.refit_overrides() if refit and hasattr(self.model, "refit_overrides") else {}
        self.model = self._new_model(seed + self.spec.seed_offset, overrides).fit(data)
        self._derive(data)
        return self

    def _new_model(self, seed: int, overrides: dict[str, Any] | None = None) -> Recommender:
        from aisle.models.registry import MODELS

        cls = MODELS[self.spec.model]
        kwargs = {**self.spec.params, **(overrides or {})}
        try:
            if "seed" in inspect.signature(cls).parameters:
                kwargs.setdefault("seed", seed)
        except (TypeError, ValueError):
            pass
        return cls(**kwargs)

    def _derive(self, data: TrainData) -> None:
        """What the kind precomputes from its fitted model (neighbour tables, normalised counts); nothing here."""
        return None

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / "model")
        arrays = self._arrays()
        if arrays:
            np.savez(path / "arrays.npz", **arrays)
        (path / "source.json").write_text(json.dumps({"kind": self.kind, "spec": self.spec.to_json()}))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def load(cls, path: Path, spec: SourceSpec, config: PipelineConfig) -> Self:
        from aisle.models.registry import MODELS

        source = cls(spec, config)
        source.model = MODELS[spec.model].load(path / "model")
        if (path / "arrays.npz").exists():
            with np.load(path / "arrays.npz", allow_pickle=False) as z:
                source._restore({k: z[k] for k in z.files})
        return source

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of `_arrays` (nothing to restore here)."""
        return None

    def with_model(self, model: Any) -> Self:
        """A shallow copy answering from `model` (serving puts an optimised retriever in place of the model)."""
        out = self.__class__.__new__(self.__class__)
        out.__dict__.update(self.__dict__)
        out.model = model
        return out

    # ---- answering -----------------------------------------------------------------------------------

    @abstractmethod
    def candidates(self, batch: SourceBatch) -> Contributions:
        """This source's candidates for every query of `batch`."""

    def score_items(self, batch: SourceBatch, query: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The model's score of each (query of `batch`, item) pair, whether or not this source proposed the item
        (the "full" feature group); only kinds with `scores_items` can."""
        raise NotImplementedError(f"source kind {self.kind!r} does not score arbitrary items")

    def neighbours(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Items next to `item` (best first, scores > 0) for an item page; None when the kind has no such notion."""
        return None

    @abstractmethod
    def explain(self, item: int, anchor: int, query: Query, names: Describe) -> dict[str, Any]:
        """Why `item` is shown to `query`, from this source (`anchor`: the history item behind it, or -1)."""

    def neighbour_reason(self, title: str) -> tuple[str, str]:
        """(type, text) of the explanation of a neighbour of the item titled `title` on its page."""
        return "similar", f"Shoppers who viewed {title} also viewed this"

    def precompute(self, data: TrainData, *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray] | None:
        """Per known user, this source's top items on their history, when running it per request is too costly
        on large catalogs (None: the kind is cheap enough per request)."""
        return None

    def update(self, events: pl.DataFrame, n_items: int) -> bool:
        """Fold new events (TrainData's encoded columns) into what the kind can refresh without a refit.
        True when something changed; the base kind cannot (a refit is needed)."""
        return False

    def with_new_items(self, rows: list[int], similarity: np.ndarray, n_old: int) -> Self:
        """A copy that knows catalog items added since the fit (cold start); kinds without neighbours ignore it."""
        return self


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n columns per row (unordered is fine: the merge ranks them), -inf entries as index -1."""
    s = np.asarray(scores, np.float32)
    n = min(n, s.shape[1])
    idx = np.argpartition(-s, n - 1, axis=1)[:, :n]
    val = np.take_along_axis(s, idx, axis=1)
    return np.where(np.isfinite(val), idx, -1).astype(np.int32), np.nan_to_num(val, neginf=0.0).astype(np.float32)


__all__ = ["CandidateSource", "Contributions", "Describe", "SourceBatch", "Window", "top_n"]
