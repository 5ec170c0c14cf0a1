"""The one recommender protocol: ids become indices once, at the edge; models see arrays only.

`TrainData` encodes a training event log (time-ordered, so sequential models get sequences and
matrix models get a user x item matrix from the same object). A model is asked to `score` a
`QueryBatch` — for each query a known user index (or -1) and the history it may see — and returns a
dense (batch, n_items) score matrix; `recommend` turns scores into top-k with exclusions and filters,
batched, for every model alike. Passing the history explicitly is what lets one model serve a
known user, a brand-new session, or a leave-one-out test query (history = train + validation target)
without refitting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import polars as pl
import scipy.sparse as sp

#: Default implicit-feedback strength per event type (a purchase says more than a view).
EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0, "click": 1.0, "search": 0.0, "favorite": 2.0, "add_to_cart": 3.0, "remove_from_cart": 0.0,
    "purchase": 5.0, "rating": 4.0,
}


@dataclass(frozen=True)
class Vocab:
    """External id <-> dense index. Unknown ids encode to -1."""

    ids: np.ndarray  # index -> external id (str)
    index: Mapping[str, int] = field(repr=False)

    @classmethod
    def of(cls, ids: Iterable[str]) -> Vocab:
        arr = np.asarray(list(dict.fromkeys(ids)), dtype=object)
        return cls(arr, {v: i for i, v in enumerate(arr)})

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, ids: Iterable[str | None]) -> np.ndarray:
        get = self.index.get
        return np.fromiter((get(i, -1) if i is not None else -1 for i in ids), dtype=np.int64)

    def decode(self, idx: Iterable[int]) -> list[str]:
        return [self.ids[i] for i in idx]


@dataclass(frozen=True)
class TrainData:
    """A training log with users/items as indices. `events` is sorted by user, then time (then source order).

    Columns of `events`: user_idx, item_idx (Int32), timestamp, event_type, value, weight (Float32).
    `catalog` (optional) is the items table aligned with `items` (row i describes item i), for content
    models and filters; items known only from events have empty text.
    """

    users: Vocab
    items: Vocab
    events: pl.DataFrame
    catalog: pl.DataFrame | None = None

    @classmethod
    def from_events(
        cls,
        events: pl.DataFrame,
        *,
        items: Vocab | None = None,
        catalog: pl.DataFrame | None = None,
        users: Vocab | None = None,
        weights: Mapping[str, float] = EVENT_WEIGHTS,
    ) -> TrainData:
        """Encode an EVENT_SCHEMA frame. Pass `items` (e.g. every item of the dataset) to rank over all items."""
        ev = events.filter(pl.col("item_id").is_not_null())
        ev = ev.with_row_index("_order").sort(["user_id", "timestamp", "_order"], maintain_order=True)
        users = users or Vocab.of(ev["user_id"].unique(maintain_order=True).to_list())
        if items is None:
            known = catalog["item_id"].to_list() if catalog is not None else []
            items = Vocab.of([*known, *ev["item_id"].unique(maintain_order=True).to_list()])
        uid = pl.Series("user_idx", users.encode(ev["user_id"].to_list()), dtype=pl.Int32)
        iid = pl.Series("item_idx", items.encode(ev["item_id"].to_list()), dtype=pl.Int32)
        w = pl.col("event_type").replace_strict(dict(weights), default=1.0, return_dtype=pl.Float32)
        enc = ev.select(pl.lit(uid).alias("user_idx"), pl.lit(iid).alias("item_idx"), "timestamp", "event_type",
                        "value", w.alias("weight"))
        enc = enc.filter((pl.col("user_idx") >= 0) & (pl.col("item_idx") >= 0))
        if catalog is not None:
            catalog = _align_catalog(catalog, items)
        return cls(users=users, items=items, events=enc, catalog=catalog)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def matrix(self, *, binary: bool = False) -> sp.csr_matrix:
        """Users x items, summed event weights (or 1 per interacted pair when `binary`)."""
        ev = self.events.filter(pl.col("weight") > 0)
        data = np.ones(ev.height, np.float32) if binary else ev["weight"].to_numpy().astype(np.float32)
        m = sp.csr_matrix((data, (ev["user_idx"].to_numpy(), ev["item_idx"].to_numpy())),
                          shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def sequences(self) -> list[np.ndarray]:
        """Per user index, the item indices in time order (events of positive weight)."""
        ev = self.events.filter(pl.col("weight") > 0)
        grouped = ev.group_by("user_idx", maintain_order=True).agg(pl.col("item_idx"))
        out: list[np.ndarray] = [np.empty(0, np.int64) for _ in range(self.n_users)]
        for u, seq in grouped.iter_rows():
            out[u] = np.asarray(seq, dtype=np.int64)
        return out


def _align_catalog(catalog: pl.DataFrame, items: Vocab) -> pl.DataFrame:
    frame = pl.DataFrame({"item_id": pl.Series(items.ids.tolist(), dtype=pl.String)})
    return frame.join(catalog.unique("item_id", keep="last"), on="item_id", how="left", maintain_order="left")


@dataclass(frozen=True)
class QueryBatch:
    """What a model may know when asked: per query a user index (-1 = unknown) and a time-ordered history."""

    user_idx: np.ndarray
    histories: Sequence[np.ndarray]

    def __post_init__(self) -> None:
        if len(self.user_idx) != len(self.histories):
            raise ValueError("user_idx and histories differ in length")

    def __len__(self) -> int:
        return len(self.histories)

    @classmethod
    def of_users(cls, data: TrainData, users: Sequence[int]) -> QueryBatch:
        seqs = data.sequences()
        return cls(np.asarray(users, dtype=np.int64), [seqs[u] for u in users])

    @classmethod
    def of_histories(cls, histories: Sequence[Sequence[int]]) -> QueryBatch:
        """Anonymous sessions: no user index, only what they did."""
        return cls(np.full(len(histories), -1, np.int64), [np.asarray(h, np.int64) for h in histories])


@runtime_checkable
class Recommender(Protocol):
    """Every model: fit on TrainData, score a batch over all items, persist without pickling code."""

    name: ClassVar[str]

    def fit(self, data: TrainData) -> Self: ...

    def score(self, batch: QueryBatch) -> np.ndarray:
        """(len(batch), n_items) float32 scores; higher is better. -inf marks items the model rules out."""
        ...

    def save(self, path: Path) -> None:
        """Write config and arrays into folder `path` (JSON + .npy/.npz/.safetensors; never pickle)."""
        ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


def recommend(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Sequence[np.ndarray] | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row of a score matrix: (indices, scores), best first.

    `exclude[i]` lists item indices row i may not get (e.g. its history); `allowed` is a boolean mask
    over items (e.g. in-stock, in a category). Rows with fewer than k admissible items are padded with -1.
    """
    s = np.array(scores, dtype=np.float32, copy=True)
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    if exclude is not None:
        rows = np.concatenate([np.full(len(e), i) for i, e in enumerate(exclude)]) if len(exclude) else []
        cols = np.concatenate(exclude) if len(exclude) else []
        if len(rows):
            s[np.asarray(rows, np.int64), np.asarray(cols, np.int64)] = -np.inf
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    val = np.take_along_axis(top, order, axis=1)
    idx = np.where(np.isneginf(val), -1, idx)
    return idx, val


def write_config(path: Path, name: str, config: Mapping[str, Any]) -> None:
    """The JSON half of a saved model: its registry name, format version and hyper-parameters."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.json").write_text(json.dumps({"model": name, "format": 1, "config": dict(config)}, indent=2))


def read_config(path: Path, name: str) -> dict[str, Any]:
    meta = json.loads((path / "model.json").read_text())
    if meta.get("model") != name:
        raise ValueError(f"{path} holds model {meta.get('model')!r}, not {name!r}")
    return dict(meta["config"])
