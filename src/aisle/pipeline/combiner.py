"""The learned combiner: a LightGBM lambdarank model over the candidates' feature frame, and the choice between it
and the best single source on held-out queries.

Why the choice: on a small or sparse store a combiner can rank worse than its best source alone. A share of the
training queries (`holdout_fraction`) is kept out of the first fit; the combiner and every source's own score
are scored there (NDCG@10 of the held-out item, per query). The combiner serves unless the best single source
ranks those queries better by more than chance (a paired t-test over the held-out queries, p < `SELECT_P`);
then that source serves. The plain larger mean decided before, and on a small store (ML-100K: ~190 held-out
queries) it chose a single source on noise: the Markov source served at 0.0959 NDCG@10 where the combiner,
kept, measured 0.1071 on the test targets (RESULTS.md, issue 24, "Every candidate scored"). When the combiner
serves it is refitted on all training queries.

Its LightGBM settings: `LGB_PARAMS`, with a configuration's `lightgbm` table on top (only the keys in `TUNABLE`),
and `rounds` boosting rounds. Unless the table sets the tree size, the number of training queries does (`SIZED`):
trees that learn the most from Beauty's thousands of queries overfit ML-100K's hundreds. With `early_stop` on, the
held-out queries also choose the number of rounds (the fit on the rest stops once NDCG@10 on them has not improved
for `early_stop` rounds, and the refit on all queries runs the best number), so a larger training set or a smaller
learning rate is not held to a count chosen for another. With `bags` > 1 it is that many LightGBM models, each on
its own random `bag_fraction` of the training queries with its own seed, their scores averaged: a lambdarank model
fitted on a few thousand queries moves with which queries it drew, and the average does not move as much.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aisle.evaluate.metrics import ndcg_of_rank
from aisle.pipeline.features import FeatureFrame

if TYPE_CHECKING:
    from aisle.pipeline.config import PipelineConfig

LGB_PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "ndcg_eval_at": [10], "learning_rate": 0.05, "num_leaves": 15,
    "max_depth": 6, "min_data_in_leaf": 50, "feature_fraction": 0.8, "lambda_l2": 10.0, "verbose": -1,
    "deterministic": True, "force_row_wise": True, "num_threads": 1,
}
#: The LightGBM parameters a configuration may set (`PipelineConfig.lightgbm`); the rest of LGB_PARAMS is fixed
#: (objective, metric, determinism, one thread).
TUNABLE: tuple[str, ...] = ("learning_rate", "num_leaves", "max_depth", "min_data_in_leaf", "feature_fraction",
                            "lambda_l2", "bagging_fraction", "bagging_freq", "lambdarank_truncation_level",
                            "min_sum_hessian_in_leaf")
#: The tree size a configuration that does not pin it gets, by the combiner's number of training queries: the
#: larger trees learn more from many queries and overfit a few. Chosen on validation targets only (RESULTS.md,
#: issue 24, "The combiner sized to its queries"): 7 leaves on ML-100K's ~800 queries, 15 on 2,101 of Beauty's,
#: 31 leaves of at least 100 rows on 9,352 of Beauty's; the thresholds lie between those counts.
SIZED: tuple[tuple[int, dict[str, int]], ...] = (
    (1_300, {"num_leaves": 7, "min_data_in_leaf": 100}),
    (4_400, {"num_leaves": 15, "min_data_in_leaf": 50}),
)
SIZED_LARGE: dict[str, int] = {"num_leaves": 31, "min_data_in_leaf": 100}
COMBINER = "combiner"
SELECT_P = 0.05  # a single source replaces the combiner only when better on the held-out queries at this level


def held_out_ndcgs(scores: np.ndarray, labels: np.ndarray, sizes: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of the one relevant row of each group (consecutive groups of `sizes` rows) that has one, in group
    order, ties pessimistic: per query, because the choice is a paired test over the same queries."""
    group = np.repeat(np.arange(len(sizes)), sizes)
    positive = labels > 0
    has = np.bincount(group[positive], minlength=len(sizes)) > 0
    if not has.any():
        return np.zeros(0)
    target = np.full(len(sizes), np.inf)
    target[group[positive]] = scores[positive]
    rank = np.bincount(group, weights=scores >= target[group], minlength=len(sizes)) - 1
    return ndcg_of_rank(rank[has].astype(np.int64), k).astype(np.float64)


def choose_ranker(per_query: dict[str, np.ndarray], p_level: float = SELECT_P) -> tuple[str, float]:
    """The combiner, unless the single source with the best mean beats it on the same queries with a paired
    t-test's two-sided p below `p_level`: (the chosen key, that p; 1.0 when no source has a larger mean)."""
    from scipy import stats

    mine = per_query[COMBINER]
    best = max((k for k in per_query if k != COMBINER), key=lambda k: per_query[k].mean(), default=None)
    if best is None or not per_query[best].mean() > mine.mean():
        return COMBINER, 1.0
    diff = per_query[best] - mine
    p = float(stats.ttest_rel(per_query[best], mine).pvalue) if len(diff) > 1 and diff.any() else 1.0
    return (best if p < p_level else COMBINER), p


def sized_params(queries: int) -> dict[str, int]:
    """The tree settings for a combiner fitted on `queries` training queries (`SIZED`)."""
    return dict(next((params for below, params in SIZED if queries < below), SIZED_LARGE))


def settings_problem(*, params: dict[str, Any], bags: int, bag_fraction: float, early_stop: int) -> str | None:
    """What is wrong with these LightGBM and bagging settings, or None. One rule for both doors: the pipeline's
    config file (which wraps it in `PipelineConfigError`) and direct construction (`ValueError`)."""
    unknown = sorted(set(params) - set(TUNABLE))
    if unknown:
        return (f"unknown lightgbm key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(TUNABLE)}")
    if bags < 1 or not 0.0 < bag_fraction <= 1.0:
        return f"bags must be at least 1 and bag_fraction in (0, 1]; got {bags}, {bag_fraction}"
    if bags > 1 and early_stop:
        return "early_stop chooses one model's rounds; it does not combine with bags > 1"
    return None


class Combiner:
    """Orders a batch's candidates: the LightGBM model, or one source's own score when that won on held-out
    queries (`ranker` names which), or the summed reciprocal ranks when nothing could be learned."""

    def __init__(self, source_keys: list[str], *, rounds: int = 80, seed: int = 0,
                 params: dict[str, Any] | None = None, early_stop: int = 0, bags: int = 1,
                 bag_fraction: float = 0.8) -> None:
        problem = settings_problem(params=params or {}, bags=bags, bag_fraction=bag_fraction, early_stop=early_stop)
        if problem:
            raise ValueError(problem)
        self.source_keys, self.rounds, self.seed = list(source_keys), rounds, seed
        self.params, self.early_stop = dict(params or {}), early_stop
        self.bags, self.bag_fraction = bags, bag_fraction
        self.best_rounds = rounds  # what the final fit runs: `rounds`, or what early stopping chose
        self.ranker = COMBINER
        self.selection: dict[str, float] = {}  # mean held-out NDCG@10 per candidate ranker
        self.selection_p = 1.0  # the paired test's p of the best single source against the combiner
        self.boosters: list[Any] = []  # one LightGBM model per bag; empty until fitted (or a source ranks)
        self.sized: dict[str, int] = {}  # the tree settings the number of training queries gave (`sized_params`)

    @classmethod
    def of_config(cls, source_keys: list[str], config: PipelineConfig) -> Combiner:
        """An unfitted combiner with the configuration's rounds, seed and LightGBM settings."""
        return cls(source_keys, rounds=config.rounds, seed=config.seed, params=config.lightgbm,
                   early_stop=config.early_stop, bags=config.bags, bag_fraction=config.bag_fraction)

    def fit(self, frame: FeatureFrame, labels: np.ndarray, sizes: np.ndarray, *, holdout_fraction: float,
            rng: np.random.Generator, owners: np.ndarray | None = None) -> Combiner:
        """Learn from the queries of `frame` (consecutive groups of `sizes` rows); `owners`, each query's user:
        a user's queries are held out together, so the choice is judged on users the combiner did not learn from."""
        if not len(sizes):
            return self
        # trees sized by every training query's count unless the configuration sizes them: the first fit (without
        # the held-out ones) and the refit on all of them train the same shape of model
        pinned = {"num_leaves", "min_data_in_leaf"} & set(self.params)
        self.sized = {} if pinned else sized_params(len(sizes))
        held = rng.random(len(sizes)) < holdout_fraction
        if owners is not None and len(owners):  # each query takes the draw of its user's first query
            _, first, inverse = np.unique(owners, return_index=True, return_inverse=True)
            held = held[first][inverse]
        if held.any() and (~held).any():
            rows = np.repeat(held, sizes)
            held_frame, held_labels, held_sizes = frame.rows(rows), labels[rows], sizes[held]
            models = self._train_bags(frame.values[~rows], labels[~rows], sizes[~held], frame.names,
                                      valid=(held_frame.values, held_labels, held_sizes) if self.early_stop else None)
            if self.early_stop:
                self.best_rounds = max(1, int(models[0].best_iteration or models[0].current_iteration()))
            per_query = {COMBINER: held_out_ndcgs(_average(models, held_frame.values), held_labels, held_sizes)}
            for key in self.source_keys:
                per_query[key] = held_out_ndcgs(held_frame.column(f"{key}_score"), held_labels, held_sizes)
            self.selection = {k: float(v.mean()) if len(v) else 0.0 for k, v in per_query.items()}
            self.ranker, self.selection_p = choose_ranker(per_query)
            if self.ranker != COMBINER:
                return self
        self.boosters = self._train_bags(frame.values, labels, sizes, frame.names, rounds=self.best_rounds)
        return self

    def lightgbm_params(self) -> dict[str, Any]:
        """The LightGBM settings its models train with: `LGB_PARAMS`, the tree size its training queries gave
        (once fitted), the configuration's table."""
        return {**LGB_PARAMS, **self.sized, **self.params}

    def _train_bags(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray, names: tuple[str, ...], *,
                    rounds: int | None = None, valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                    ) -> list[Any]:
        """`bags` models: one on every query (bags = 1), else each on a random `bag_fraction` of the queries
        (drawn from the combiner's seed and the bag's number, so the same fit draws the same) with seed + bag."""
        if self.bags == 1:
            return [self._train(x, y, sizes, names, rounds=rounds, valid=valid, seed=self.seed)]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        take = max(1, round(self.bag_fraction * len(sizes)))
        models = []
        for bag in range(self.bags):
            queries = np.sort(np.random.default_rng([self.seed, bag]).choice(len(sizes), take, replace=False))
            rows = np.concatenate([np.arange(starts[q], starts[q + 1]) for q in queries])
            models.append(self._train(x[rows], y[rows], sizes[queries], names, rounds=rounds, seed=self.seed + bag))
        return models

    def _train(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray, names: tuple[str, ...], *,
               rounds: int | None = None, valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               seed: int = 0) -> Any:
        """A LightGBM lambdarank model; with `valid` (held-out rows, labels, group sizes) it stops once their
        NDCG@10 has not improved for `early_stop` rounds and keeps the best iteration."""
        import lightgbm as lgb

        data = lgb.Dataset(x, y, group=sizes.tolist(), feature_name=list(names))
        params = {**self.lightgbm_params(), "seed": seed}
        if valid is None:
            return lgb.train(params, data, num_boost_round=rounds or self.rounds)
        check = lgb.Dataset(valid[0], valid[1], group=valid[2].tolist(), reference=data)
        return lgb.train(params, data, num_boost_round=self.rounds, valid_sets=[check],
                         callbacks=[lgb.early_stopping(self.early_stop, first_metric_only=True, verbose=False)])

    def score(self, frame: FeatureFrame) -> np.ndarray:
        """The ranking score of each candidate row."""
        if not len(frame.values):
            return np.zeros(0)
        if self.ranker in self.source_keys:
            return frame.column(f"{self.ranker}_score").astype(np.float64) + 1e-3 * frame.column("popularity")
        if not self.boosters:
            return frame.columns([f"{k}_rr" for k in self.source_keys]).sum(axis=1).astype(np.float64)
        return _average(self.boosters, frame.values)

    def save(self, path: Path) -> None:
        """One JSON file: the choice, the held-out scores and the LightGBM model as its own text format (a string
        in the JSON, so a bundle holds only JSON and arrays, like every model)."""
        path.mkdir(parents=True, exist_ok=True)
        meta = {"ranker": self.ranker, "selection": self.selection, "selection_p": self.selection_p,
                "sources": self.source_keys,
                "rounds": self.rounds, "seed": self.seed, "params": self.params, "early_stop": self.early_stop,
                "best_rounds": self.best_rounds, "bags": self.bags, "bag_fraction": self.bag_fraction,
                "sized": self.sized,
                "lightgbm": [b.model_to_string() for b in self.boosters] or None}
        (path / "combiner.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path) -> Combiner:
        meta = json.loads((path / "combiner.json").read_text())
        # absent keys: saved before the LightGBM settings were configurable (LGB_PARAMS, a fixed count)
        out = cls(meta["sources"], rounds=meta["rounds"], seed=meta["seed"], params=meta.get("params"),
                  early_stop=int(meta.get("early_stop", 0)), bags=int(meta.get("bags", 1)),
                  bag_fraction=float(meta.get("bag_fraction", 0.8)))
        out.best_rounds = int(meta.get("best_rounds", meta["rounds"]))
        out.ranker, out.selection = meta["ranker"], meta["selection"]
        out.selection_p = float(meta.get("selection_p", 1.0))  # absent: saved before the paired choice
        out.sized = dict(meta.get("sized", {}))  # absent: saved before the settings were sized (LGB_PARAMS')
        if meta["lightgbm"] is not None:
            import lightgbm as lgb

            saved = meta["lightgbm"]  # one string: saved before bags
            out.boosters = [lgb.Booster(model_str=m) for m in ([saved] if isinstance(saved, str) else saved)]
        return out


def _average(models: list[Any], x: np.ndarray) -> np.ndarray:
    """The mean of the models' scores of the rows of `x` (one model: its scores)."""
    total = np.asarray(models[0].predict(x, num_threads=1), np.float64)
    for model in models[1:]:
        total += model.predict(x, num_threads=1)
    return total / len(models)


__all__ = ["COMBINER", "LGB_PARAMS", "SELECT_P", "SIZED", "SIZED_LARGE", "TUNABLE", "Combiner", "choose_ranker",
           "held_out_ndcgs", "sized_params"]
