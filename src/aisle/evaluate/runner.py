"""The experiment runner: tune each model on the validation targets, then score it once on the test targets.

Why it is shaped like this: a comparison is only worth publishing when no test target ever influences a
fit or a choice. So for every model the runner

1. fits each candidate configuration (the class's `search_space` grid, at most `max_trials` of it) on
   `split.train` and scores it on the VALIDATION targets (query history = `split.history("valid")`);
2. keeps the configuration with the best validation `select_metric` (the first one on a tie);
3. refits that configuration on `split.history("test")` (training events plus the validation targets,
   never a test target) and scores it on the test targets, recording fit and evaluation seconds.

Every model ranks the same vocabulary (all items of the dataset, `protocol.item_vocab`), seeds are set
before every fit (Python, NumPy, torch, and a `seed` constructor argument where the class has one), and
everything the report needs (chosen and tried parameters, validation and test metrics, timings, split
sizes) is kept in the returned `Experiment`.
"""

from __future__ import annotations

import inspect
import itertools
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aisle.data.readers.base import Dataset
from aisle.data.splits import Split, leave_one_out, temporal_split
from aisle.evaluate.protocol import DEFAULT_KS, EvalResult, candidate_recall, evaluate, item_vocab, label
from aisle.models.base import Recommender, TrainData, Vocab

PROTOCOLS = ("loo", "temporal")
DEFAULT_MAX_TRIALS = 8


class ModelError(RuntimeError):
    """A model failed to fit or score; names the model and the configuration."""

    def __init__(self, name: str, params: Mapping[str, Any], cause: BaseException) -> None:
        super().__init__(f"model {name!r} with {dict(params)} failed: {type(cause).__name__}: {cause}")
        self.name = name
        self.params = dict(params)


@dataclass
class Trial:
    params: dict[str, Any]
    valid: dict[str, float]
    fit_seconds: float
    eval_seconds: float


@dataclass
class ModelRun:
    """One model's outcome: chosen parameters, test metrics, timings and the validation trials behind the choice."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    valid: dict[str, float]
    trials: list[Trial]
    fit_seconds: float
    eval_seconds: float
    tuning_seconds: float
    result: EvalResult = field(repr=False)
    # a deep model's own training record of the final fit (`TrainResult`: epochs run, the best epoch and its
    # NDCG@10 on the held-out last items, the per-epoch history): the early-stopping choice, kept for the report
    training: dict[str, Any] | None = None
    # a pipeline's candidate recall on the test targets per source and merged (`protocol.candidate_recall`)
    candidate_recall: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.metrics)
        out.update(
            fit_seconds=round(self.fit_seconds, 3),
            eval_seconds=round(self.eval_seconds, 3),
            tuning_seconds=round(self.tuning_seconds, 3),
            params=self.params,
            n_evaluated=self.result.n_users,
            n_targets=self.result.n_targets,
            unreachable_targets=self.result.unreachable_targets,
            valid=self.valid,
            trials=[{"params": t.params, "valid": t.valid, "fit_seconds": round(t.fit_seconds, 3)}
                    for t in self.trials],
        )
        if self.result.sampled is not None:
            out["sampled"] = self.result.sampled
        if self.training is not None:
            out["training"] = self.training
        if self.candidate_recall is not None:
            out["candidate_recall"] = self.candidate_recall
        return out


@dataclass
class Experiment:
    dataset: str
    protocol: str
    n_users: int
    n_items: int
    ks: tuple[int, ...]
    seed: int
    select_metric: str
    split: dict[str, int]
    sampled: int | None = None
    target_types: list[str] | None = None
    exclude_seen: bool = True
    models: dict[str, ModelRun] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON: dataset, protocol, n_users, n_items, models -> {metric: value, ...}, plus context."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "models": {name: run.as_dict() for name, run in self.models.items()},
            "ks": list(self.ks),
            "seed": self.seed,
            "select_metric": self.select_metric,
            "split": self.split,
            "ranking": "full" if self.sampled is None else f"sampled-{self.sampled}",
            "exclude_seen": self.exclude_seen,
        }
        if self.sampled is not None:
            out["sampled"] = self.sampled
        if self.target_types is not None:
            out["target_types"] = self.target_types
        return out

    def per_user(self) -> pl.DataFrame:
        """One row per (model, test user): that user's test metrics. A published split may only be comparable
        on some of its users (ML-1M's gSASRec split has complete test histories for 512 of them), and paired
        significance tests need the per-user values, so the report can keep them beside the means."""
        frames = [
            pl.DataFrame({"model": [name] * run.result.n_users, "user_id": run.result.users.astype(str),
                          **{m: v.astype(np.float64) for m, v in run.result.per_user.items()}})
            for name, run in self.models.items()
        ]
        return pl.concat(frames, how="diagonal") if frames else pl.DataFrame(
            schema={"model": pl.String, "user_id": pl.String})


def candidate_params(space: Mapping[str, Sequence[Any]], max_trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """The grid of `space` in order; when larger than `max_trials`, its first point plus a seeded sample of the rest."""
    if max_trials < 1:
        raise ValueError(f"max_trials must be at least 1, got {max_trials}")
    keys = list(space)
    grid = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(space[k] for k in keys))]
    if len(grid) <= max_trials:
        return grid
    rng = np.random.default_rng(seed)
    rest = sorted(rng.choice(np.arange(1, len(grid)), size=max_trials - 1, replace=False).tolist())
    return [grid[0], *(grid[i] for i in rest)]


def make_split(events: pl.DataFrame, protocol: str, target_types: Iterable[str] | None = None) -> Split:
    if protocol == "loo":
        return leave_one_out(events, target_types=target_types)
    if protocol == "temporal":
        return temporal_split(events)
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # models that use the global generator get a fixed one
    torch.manual_seed(seed)


def _construct(cls: type, params: Mapping[str, Any], seed: int) -> Recommender:
    kwargs = dict(params)
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}
    if "seed" in accepted and "seed" not in kwargs:
        kwargs["seed"] = seed
    return cls(**kwargs)


def resolve_models(models: Sequence[str | type] | Mapping[str, type],
                   registry: Mapping[str, type] | None = None) -> dict[str, type]:
    """Names (looked up in `registry`, default `aisle.models.registry.MODELS`) or classes -> {name: class}."""
    if isinstance(models, Mapping):
        return dict(models)
    out: dict[str, type] = {}
    for m in models:
        if isinstance(m, str):
            if registry is None:
                from aisle.models.registry import MODELS

                registry = MODELS
            if m not in registry:
                raise KeyError(f"unknown model {m!r}; known: {', '.join(sorted(registry))}")
            out[m] = registry[m]
        else:
            out[getattr(m, "name", m.__name__)] = m
    return out


@contextmanager
def _progress(console: Console | None) -> Iterator[Progress | None]:
    if console is None:
        yield None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console, transient=True)
    with bar:
        yield bar


def run_experiment(
    data: Dataset | pl.DataFrame,
    models: Sequence[str | type] | Mapping[str, type],
    *,
    protocol: str = "loo",
    ks: Sequence[int] = DEFAULT_KS,
    max_trials: int = DEFAULT_MAX_TRIALS,
    select_metric: str | None = None,
    seed: int = 0,
    sampled: int | None = None,
    target_types: Sequence[str] | None = None,
    exclude_seen: bool = True,
    registry: Mapping[str, type] | None = None,
    console: Console | None = None,
    name: str | None = None,
    batch_size: int | None = None,
) -> Experiment:
    """Tune, refit and test every model of `models` on `data` (see the module docstring).

    `data` is a Dataset (its catalog is given to the models) or an EVENT_SCHEMA frame. `target_types`
    restricts the targets (e.g. purchases); the items a user already had of those types are then the
    ones excluded from the ranking (`exclude_seen=False` keeps them rankable: repeat-purchase domains).
    `console` shows progress bars there.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs must be positive integers, got {ks}")
    if sampled is not None and sampled < 1:
        raise ValueError(f"sampled must be a positive number of negatives, got {sampled}")
    classes = resolve_models(models, registry)
    events = data.events if isinstance(data, Dataset) else data
    catalog = data.items if isinstance(data, Dataset) and data.items.height else None
    split = make_split(events, protocol, target_types)
    vocab = item_vocab(events, catalog)
    metric = label(select_metric or f"NDCG@{ks[0]}", sampled)
    types = list(target_types) if target_types is not None else None
    exp = Experiment(
        dataset=name or (data.name if isinstance(data, Dataset) else "events"),
        protocol=protocol, n_users=int(events["user_id"].n_unique()), n_items=len(vocab), ks=ks, seed=seed,
        select_metric=metric, sampled=sampled, target_types=types, exclude_seen=exclude_seen,
        split={"train_events": split.train.height, "valid_targets": split.valid.height,
               "test_targets": split.test.height, "gap_events": split.gap.height},
    )
    opts = {"ks": ks, "target_types": types, "exclude_seen": exclude_seen, "exclude_types": types,
            "sampled": sampled, "seed": seed, "batch_size": batch_size}
    train_valid: TrainData | None = None
    train_test: TrainData | None = None
    with _progress(console) as bar:
        overall = bar.add_task("Models", total=len(classes)) if bar else None
        for model_name, cls in classes.items():
            space = dict(getattr(cls, "search_space", {}) or {})
            candidates = candidate_params(space, max_trials, seed)
            trials: list[Trial] = []
            t_tune = time.perf_counter()
            if len(candidates) > 1:
                if train_valid is None:
                    train_valid = _train_data(split.history("valid"), vocab, catalog)
                for params in candidates:
                    model, fit_s = _fit(model_name, cls, params, train_valid, seed, bar)
                    res = _eval(model_name, params, model, train_valid, split, "valid", opts, bar)
                    trials.append(Trial(params, res.metrics, fit_s, res.seconds))
                best = max(range(len(trials)), key=lambda i: (trials[i].valid.get(metric, float("-inf")), -i))
                chosen, valid = candidates[best], trials[best].valid
            else:
                chosen, valid = (candidates[0] if candidates else {}), {}
            tuning_s = time.perf_counter() - t_tune
            if train_test is None:
                train_test = _train_data(split.history("test"), vocab, catalog)
            model, fit_s = _fit(model_name, cls, chosen, train_test, seed, bar)
            res = _eval(model_name, chosen, model, train_test, split, "test", opts, bar)
            record = getattr(model, "result", None)
            recall = _candidate_recall(model_name, chosen, model, train_test, split, opts) if sampled is None \
                else None
            exp.models[model_name] = ModelRun(model_name, chosen, res.metrics, valid, trials, fit_s, res.seconds,
                                              tuning_s, res, asdict(record) if is_dataclass(record) else None,
                                              recall)
            if bar is not None and overall is not None:
                bar.advance(overall)
    return exp


def _train_data(events: pl.DataFrame, vocab: Vocab, catalog: pl.DataFrame | None) -> TrainData:
    return TrainData.from_events(events, items=vocab, catalog=catalog)


def _fit(name: str, cls: type, params: Mapping[str, Any], data: TrainData, seed: int,
         bar: Progress | None) -> tuple[Recommender, float]:
    task = bar.add_task(f"Fitting {name} {_short(params)}", total=None) if bar else None
    try:
        _seed_everything(seed)
        t0 = time.perf_counter()
        model = _construct(cls, params, seed).fit(data)
        return model, time.perf_counter() - t0
    except Exception as exc:
        raise ModelError(name, params, exc) from exc
    finally:
        if bar is not None and task is not None:
            bar.remove_task(task)


def _eval(name: str, params: Mapping[str, Any], model: Recommender, data: TrainData, split: Split, stage: str,
          opts: Mapping[str, Any], bar: Progress | None) -> EvalResult:
    task = bar.add_task(f"Scoring {name} on {stage}", total=None) if bar else None

    def step(done: int, total: int) -> None:
        if bar is not None and task is not None:
            bar.update(task, completed=done, total=total)

    try:
        return evaluate(model, data, split, stage, progress=step, **opts)
    except Exception as exc:
        raise ModelError(name, params, exc) from exc
    finally:
        if bar is not None and task is not None:
            bar.remove_task(task)


def _candidate_recall(name: str, params: Mapping[str, Any], model: Recommender, data: TrainData, split: Split,
                      opts: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return candidate_recall(model, data, split, "test", target_types=opts["target_types"],
                                exclude_seen=opts["exclude_seen"], exclude_types=opts["exclude_types"],
                                batch_size=opts["batch_size"])
    except Exception as exc:
        raise ModelError(name, params, exc) from exc


def _short(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


__all__ = [
    "DEFAULT_MAX_TRIALS",
    "PROTOCOLS",
    "Experiment",
    "ModelError",
    "ModelRun",
    "Trial",
    "candidate_params",
    "make_split",
    "resolve_models",
    "run_experiment",
]
