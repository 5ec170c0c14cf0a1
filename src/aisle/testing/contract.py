"""The recommender contract: checks every registered model must pass, reusable by any test suite.

Why as code in the package: a model is only servable if it honours the whole `Recommender` protocol (shapes,
dtypes, new sessions, persistence without pickle, determinism), and the cheapest way to keep a growing registry
honest is one suite that every entry runs. Each check is a plain function taking `make(seed) -> model`;
`RecommenderContract` wraps them as pytest test methods that need a `make` fixture, so a test module is:

    @pytest.fixture(params=sorted(MODELS))
    def make(request): ...

    class TestModels(RecommenderContract): ...

"Learns signal" is measured on `planted_toy()`: two user groups with disjoint item sets (and group-specific
item text), each user walking a chain of consecutive items from a skewed start, the last step held out.
Every model must rank the held-out item above the other candidates better than chance (mean AUC), for known
users and for the same histories sent as anonymous sessions: popularity passes through the skewed starts,
co-occurrence and factor models through the groups, Markov models through the chains, content through text.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, Recommender, TrainData, Vocab, read_config, recommend
from aisle.models.similarity import ItemSimilarity
from aisle.types import EVENT_SCHEMA, ITEM_SCHEMA, conform

Factory = Callable[[int], Recommender]

#: Saved models may hold only these kinds of files (JSON config and plain arrays; never pickle).
SAFE_SUFFIXES = (".json", ".npy", ".npz", ".safetensors")
#: Minimum mean AUC of the held-out item on the planted toy (chance is 0.5).
MIN_AUC = 0.6
#: At most this many configurations in a model's search_space grid (the runner fits each one).
MAX_GRID = 48

_WORDS = (
    ("trail", "hiking", "boots", "tent", "backpack", "camping", "climbing", "rope", "compass", "lantern"),
    ("lipstick", "mascara", "serum", "moisturizer", "perfume", "eyeliner", "blush", "shampoo", "lotion", "nail"),
)


@dataclass(frozen=True)
class Toy:
    """A small log with planted structure. Item i belongs to group `item_group[i]`; the last `n_cold` items
    have text but no events. `users[q]` (a user index of `train`) saw `histories[q]` and then `targets[q]`."""

    train: TrainData
    item_group: np.ndarray
    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray
    n_cold: int


@functools.cache
def planted_toy(n_groups: int = 2, items_per_group: int = 20, users_per_group: int = 40, seed: int = 0) -> Toy:
    rng = np.random.default_rng(seed)
    n_warm = n_groups * items_per_group
    start_p = 1.0 / np.arange(1, items_per_group + 1) ** 2.0  # skewed starts: some items are much more popular
    start_p /= start_p.sum()
    rows: list[dict[str, object]] = []
    histories, targets, owners = [], [], []
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for g, u in itertools.product(range(n_groups), range(users_per_group)):
        user = f"u{g}_{u:03d}"
        length = int(rng.integers(6, 10))
        pos = int(rng.choice(items_per_group, p=start_p))
        seq = []
        for _ in range(length):
            seq.append(g * items_per_group + pos)
            step = 1 if rng.random() < 0.85 else int(rng.integers(2, 4))
            pos = (pos + step) % items_per_group
        start = t0 + timedelta(hours=int(rng.integers(0, 24 * 14)))
        rows += [{"user_id": user, "item_id": f"i{it:03d}", "event_type": "purchase",
                  "timestamp": start + timedelta(minutes=10 * k)} for k, it in enumerate(seq[:-1])]
        histories.append(np.asarray(seq[:-1], np.int64))
        targets.append(seq[-1])
        owners.append(user)
    n_cold = n_groups
    n_items = n_warm + n_cold
    item_group = np.r_[np.repeat(np.arange(n_groups), items_per_group), np.arange(n_groups)]
    ids = [f"i{i:03d}" for i in range(n_items)]
    catalog = conform(pl.DataFrame({
        "item_id": ids,
        "title": [_title(int(item_group[i]), i, rng) for i in range(n_items)],
        "categories": [["Outdoors" if item_group[i] == 0 else "Beauty"] for i in range(n_items)],
    }), ITEM_SCHEMA)
    events = conform(pl.DataFrame(rows), EVENT_SCHEMA)
    train = TrainData.from_events(events, items=Vocab.of(ids), catalog=catalog)
    users = train.users.encode(owners)
    return Toy(train, item_group, users, histories, np.asarray(targets, np.int64), n_cold)


def _title(group: int, i: int, rng: np.random.Generator) -> str:
    words = _WORDS[group % len(_WORDS)]
    a, b = rng.choice(len(words), size=2, replace=False)
    return f"{words[a]} {words[b]} model {i}"


def mean_auc(scores: np.ndarray, histories: list[np.ndarray], targets: np.ndarray) -> float:
    """Mean over queries of P(target scores above a random non-history candidate), ties counting half."""
    aucs = []
    for s, h, t in zip(scores, histories, targets, strict=True):
        cand = np.ones(len(s), bool)
        cand[h] = False
        cand[t] = False
        other = s[cand]
        aucs.append(((other < s[t]).sum() + 0.5 * (other == s[t]).sum()) / max(len(other), 1))
    return float(np.mean(aucs))


def _fitted(make: Factory, seed: int = 0) -> Recommender:
    return make(seed).fit(planted_toy().train)


def _check_scores(scores: np.ndarray, n_queries: int, n_items: int, what: str) -> None:
    assert isinstance(scores, np.ndarray), f"{what}: score() returned {type(scores).__name__}, not an ndarray"
    assert scores.shape == (n_queries, n_items), f"{what}: shape {scores.shape} != {(n_queries, n_items)}"
    assert scores.dtype == np.float32, f"{what}: dtype {scores.dtype} != float32"
    assert np.all(np.isfinite(scores) | np.isneginf(scores)), f"{what}: scores hold NaN or +inf"


# ---- the checks -----------------------------------------------------------------------------------


def check_declaration(cls: type) -> None:
    """name and search_space are declared; every searched parameter is a constructor argument whose grid starts
    at its (tuned) default, so the grid's first point is the default configuration; the grid is small."""
    assert isinstance(getattr(cls, "name", None), str) and cls.name, f"{cls.__name__} has no name"
    space = getattr(cls, "search_space", None)
    assert isinstance(space, dict), f"{cls.__name__}.search_space is not a dict"
    params = inspect.signature(cls).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, values in space.items():
        assert key in params or open_kwargs, f"{cls.name}: search_space key {key!r} is not a constructor argument"
        assert isinstance(values, list) and values, f"{cls.name}: search_space[{key!r}] is not a non-empty list"
        default = params[key].default if key in params else inspect.Parameter.empty
        assert default is inspect.Parameter.empty or values[0] == default, \
            f"{cls.name}: search_space[{key!r}] must start with the default {default!r} (a capped search tries " \
            f"the grid's first point first)"
    size = int(np.prod([len(v) for v in space.values()])) if space else 1
    assert size <= MAX_GRID, f"{cls.name}: search_space grid has {size} configurations (> {MAX_GRID})"
    for cfg in itertools.product(*space.values()):
        cls(**dict(zip(space, cfg, strict=True)))  # every configuration constructs


def check_fit_returns_self(make: Factory) -> None:
    model = make(0)
    assert model.fit(planted_toy().train) is model, f"{model.name}: fit() must return self"


def check_score_contract(make: Factory) -> None:
    toy, model = planted_toy(), _fitted(make)
    n = toy.train.n_items
    known = QueryBatch(toy.users[:7], toy.histories[:7])
    _check_scores(model.score(known), 7, n, f"{model.name} known users")
    sessions = QueryBatch.of_histories([h[:3] for h in toy.histories[:5]])
    _check_scores(model.score(sessions), 5, n, f"{model.name} new sessions")
    empty = QueryBatch.of_histories([[], []])
    _check_scores(model.score(empty), 2, n, f"{model.name} empty histories")
    known_empty = QueryBatch(toy.users[:2], [np.empty(0, np.int64)] * 2)
    _check_scores(model.score(known_empty), 2, n, f"{model.name} known users with empty histories")
    cold = QueryBatch.of_histories([[n - 1], [n - 2, 0]])  # items with no training events
    _check_scores(model.score(cold), 2, n, f"{model.name} histories of cold items")
    _check_scores(model.score(QueryBatch.of_histories([])), 0, n, f"{model.name} empty batch")


def check_rows_independent(make: Factory) -> None:
    """A query's scores do not depend on what else is in its batch."""
    toy, model = planted_toy(), _fitted(make)
    batch = QueryBatch(np.r_[toy.users[:4], -1], [*toy.histories[:4], toy.histories[50][:2]])
    together = model.score(batch)
    for i in range(len(batch)):
        alone = model.score(QueryBatch(batch.user_idx[i:i + 1], [batch.histories[i]]))
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{model.name}: query {i} scores differ alone and in a batch")


def check_deterministic(make: Factory) -> None:
    toy = planted_toy()
    batch = QueryBatch(np.r_[toy.users[:6], -1, -1], [*toy.histories[:6], toy.histories[60][:3], np.empty(0, int)])
    first, second = _fitted(make, 7), _fitted(make, 7)
    assert np.array_equal(first.score(batch), second.score(batch)), \
        f"{first.name}: two fits with the same seed score differently"


def check_save_load(make: Factory) -> None:
    toy, model = planted_toy(), _fitted(make)
    cls = type(model)
    batch = QueryBatch(np.r_[toy.users[:5], -1], [*toy.histories[:5], toy.histories[45][:4]])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        model.save(path)
        files = [p for p in path.rglob("*") if p.is_file()]
        assert (path / "model.json").exists(), f"{model.name}: save() wrote no model.json"
        read_config(path, model.name)
        for f in files:
            assert f.name.endswith(SAFE_SUFFIXES), f"{model.name}: save() wrote {f.name} (not JSON/npy/npz)"
            if f.suffix in (".npy", ".npz"):
                loaded = np.load(f, allow_pickle=False)  # raises if the file needs unpickling
                if f.suffix == ".npz":
                    _ = [loaded[k] for k in loaded.files]
        again = cls.load(path)
    assert type(again) is cls
    assert np.array_equal(model.score(batch), again.score(batch)), f"{model.name}: scores change after save/load"
    if isinstance(model, ItemSimilarity):
        items = np.arange(min(5, toy.train.n_items))
        for x, y in zip(model.similar(items, 4), again.similar(items, 4), strict=True):
            assert np.array_equal(x, y), f"{model.name}: similar() changes after save/load"


def check_recommend_excludes(make: Factory) -> None:
    toy, model = planted_toy(), _fitted(make)
    hist = toy.histories[:10]
    idx, _ = recommend(model.score(QueryBatch(toy.users[:10], hist)), 10, exclude=hist)
    for row, h in zip(idx, hist, strict=True):
        assert not set(row.tolist()) & set(h.tolist()), f"{model.name}: recommend returned an excluded item"


def check_learns_signal(make: Factory) -> None:
    toy, model = planted_toy(), _fitted(make)
    known = mean_auc(model.score(QueryBatch(toy.users, toy.histories)), toy.histories, toy.targets)
    assert known >= MIN_AUC, f"{model.name}: held-out AUC {known:.3f} for known users (need >= {MIN_AUC})"
    anon = mean_auc(model.score(QueryBatch.of_histories(toy.histories)), toy.histories, toy.targets)
    assert anon >= MIN_AUC, f"{model.name}: held-out AUC {anon:.3f} for new sessions (need >= {MIN_AUC})"


def check_similar(make: Factory) -> None:
    model = _fitted(make)
    if not isinstance(model, ItemSimilarity):
        return
    n = planted_toy().train.n_items
    items = np.array([0, 5, 21, n - 1, -1])
    idx, val = model.similar(items, 6)
    assert idx.shape == (5, 6) and val.shape == (5, 6), f"{model.name}: similar() shapes {idx.shape}, {val.shape}"
    assert np.issubdtype(idx.dtype, np.integer) and val.dtype == np.float32
    assert not np.any(idx[:-1] == items[:-1, None]), f"{model.name}: similar() returned the query item itself"
    assert np.all(idx[-1] == -1), f"{model.name}: similar() answered for an unknown item"
    assert np.all((idx >= -1) & (idx < n))
    assert np.all(np.isneginf(val[idx == -1])), f"{model.name}: padding must score -inf"
    for row_i, row_v in zip(idx, val, strict=True):
        real = row_v[row_i >= 0]
        assert np.all(np.diff(real) <= 1e-6), f"{model.name}: similar() rows must be best first"
        assert np.all(row_i[len(real):] == -1), f"{model.name}: similar() padding must come last"


CHECKS: dict[str, Callable[[Factory], None]] = {
    "fit_returns_self": check_fit_returns_self,
    "score_contract": check_score_contract,
    "rows_independent": check_rows_independent,
    "deterministic": check_deterministic,
    "save_load": check_save_load,
    "recommend_excludes": check_recommend_excludes,
    "learns_signal": check_learns_signal,
    "similar": check_similar,
}


class RecommenderContract:
    """Mix into a pytest class that provides a `make` fixture (seed -> unfitted model)."""

    def test_declaration(self, make: Factory) -> None:
        check_declaration(type(make(0)))

    def test_fit_returns_self(self, make: Factory) -> None:
        check_fit_returns_self(make)

    def test_score_contract(self, make: Factory) -> None:
        check_score_contract(make)

    def test_rows_independent(self, make: Factory) -> None:
        check_rows_independent(make)

    def test_deterministic(self, make: Factory) -> None:
        check_deterministic(make)

    def test_save_load(self, make: Factory) -> None:
        check_save_load(make)

    def test_recommend_excludes(self, make: Factory) -> None:
        check_recommend_excludes(make)

    def test_learns_signal(self, make: Factory) -> None:
        check_learns_signal(make)

    def test_similar(self, make: Factory) -> None:
        check_similar(make)
