"""Which optional combiner feature groups earn their place, scored on the VALIDATION targets only (leave-one-out,
history excluded): no test target is read, so the default it informs (`PipelineConfig.features`) cannot overfit
the test set.

    nice -n 5 .venv/bin/python benchmarks/pipeline_features.py s3rec:../shared/data/amazon-s3rec/Beauty.txt \
        --config benchmarks/pipeline_fast.toml --variants none,tags --json features.json

One pipeline fit on the training events with every group of every variant (sources fitted on the training events
without each user's last one, the combiner's training frame taken from them, sources refitted on all training
events: exactly `Pipeline.fit`); then per variant a combiner trained on that frame's base columns plus the
variant's groups (same LightGBM settings, same choice against the best single source), and the validation
targets ranked among the merged candidates by it. A target that is not a candidate is a miss, as it is in the
harness, where the pipeline ranks every candidate above every other item. A variant is a `+`-joined list of
groups (`none`: the base columns only), optionally followed by combiner settings, each `@KEY=VALUE`: the
`[pipeline]` keys `rounds`, `early_stop`, `max_train_queries` (`all`: every training query) and the LightGBM keys
of `aisle.pipeline.combiner.TUNABLE` (the `lightgbm` table). So the combiner's settings are compared on one
frame, fitted once:

    chrt --idle 0 nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pipeline_features.py \
        s3rec:../shared/data/amazon-s3rec/Beauty.txt --config benchmarks/pipeline_full.toml \
        --variants 'tags+full,tags+full@max_train_queries=all@early_stop=50@rounds=1000'

The frame holds the largest `max_train_queries` of any variant; a variant with fewer takes that share of its
queries at random (the pipeline draws its users at random too, before it drops those whose target is not a
candidate).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from rich.console import Console
from rich.table import Table

from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.cli.train import load_config, pipeline_config
from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out
from aisle.evaluate.protocol import build_queries, item_vocab
from aisle.models.base import TrainData
from aisle.pipeline import Combiner, FeatureFrame, Pipeline, PipelineConfig
from aisle.pipeline.combiner import TUNABLE
from aisle.pipeline.core import TrainingFrame, hold_out_tail
from aisle.pipeline.features import GROUPS, feature_names

SETTINGS = ("rounds", "early_stop", "max_train_queries", "bags", "bag_fraction")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataspec")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--variants", default="none,tags")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--save-frame", type=Path, help="a folder: keep the fitted pipeline's training frame and the "
                    "validation candidates there, so that --load-frame compares combiners without refitting")
    ap.add_argument("--load-frame", type=Path, help="a folder written by --save-frame (same dataspec and seed)")
    ap.add_argument("--per-user", type=Path, help="a .parquet file: each validation user's HR/NDCG@10 per variant")
    args = ap.parse_args()
    torch.set_num_threads(1)
    console = Console(stderr=True)
    base = pipeline_config(load_config(args.config), sources=DEMO_SOURCES_FAST)
    variants = {v: _variant(v, base) for v in args.variants.split(",")}
    if args.load_frame:
        frame = SavedFrame.load(args.load_frame)
        if (frame.dataspec, frame.seed) != (args.dataspec, args.seed):
            raise SystemExit(f"{args.load_frame} holds {frame.dataspec} at seed {frame.seed}, not {args.dataspec} "
                             f"at seed {args.seed}")
    else:
        frame = build_frame(args.dataspec, base, variants, args.seed, console)
        if args.save_frame:
            frame.save(args.save_frame)
            console.print(f"saved the frame to {args.save_frame}")
    _compare(frame, base, variants, args, console)


@dataclass
class SavedFrame:
    """What every combiner variant is trained and judged on, from one pipeline fit: the training frame (the
    queries whose held-out event is a candidate, as `Pipeline.training_frame` builds it, with each row's user and
    item), and the validation candidates of the users whose validation target is a candidate (the others are
    misses whatever the combiner does, so their rows are not kept: the frame stays a few hundred MB on Beauty)."""

    dataspec: str
    seed: int
    fit_seconds: float
    source_keys: list[str]
    scorer_keys: list[str]
    names: tuple[str, ...]
    held_queries: int  # the held-out training events (`train_positions` per user): what `max_train_queries` counts
    drawn_queries: int  # how many of them the training queries were drawn from (all, or the largest variant's share)
    train_values: np.ndarray
    train_labels: np.ndarray
    train_sizes: np.ndarray
    train_user: np.ndarray
    train_item: np.ndarray
    valid_values: np.ndarray
    valid_query: np.ndarray  # row -> position in valid_user
    valid_item: np.ndarray
    valid_user: np.ndarray  # every validation user, in query order
    valid_target: np.ndarray

    ARRAYS = ("train_values", "train_labels", "train_sizes", "train_user", "train_item", "valid_values",
              "valid_query", "valid_item", "valid_user", "valid_target")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "frame.npz", **{name: getattr(self, name) for name in self.ARRAYS})
        (folder / "frame.json").write_text(json.dumps({
            "dataspec": self.dataspec, "seed": self.seed, "fit_seconds": self.fit_seconds,
            "source_keys": self.source_keys, "scorer_keys": self.scorer_keys, "names": list(self.names),
            "held_queries": self.held_queries, "drawn_queries": self.drawn_queries}))

    @classmethod
    def load(cls, folder: Path) -> SavedFrame:
        meta = json.loads((folder / "frame.json").read_text())
        with np.load(folder / "frame.npz") as arrays:
            loaded = {name: arrays[name] for name in cls.ARRAYS}
        return cls(meta["dataspec"], meta["seed"], meta["fit_seconds"], meta["source_keys"], meta["scorer_keys"],
                   tuple(meta["names"]), meta["held_queries"], meta["drawn_queries"], **loaded)

    def feature_names(self, groups: tuple[str, ...]) -> list[str]:
        return feature_names(self.source_keys, groups, self.scorer_keys)


def build_frame(dataspec: str, base: PipelineConfig, variants: dict[str, tuple[tuple[str, ...], PipelineConfig]],
                seed: int, console: Console) -> SavedFrame:
    """One pipeline fit with every group of every variant and the largest `max_train_queries`; its training frame
    and validation candidates."""
    every = tuple(dict.fromkeys(g for groups, _ in variants.values() for g in groups if g not in DERIVED))
    data = read_dataspec(dataspec)
    split = leave_one_out(data.events)
    catalog = data.items if data.items.height else None
    train = TrainData.from_events(split.history("valid"), items=item_vocab(data.events, catalog), catalog=catalog)
    held_queries = len(hold_out_tail(train, base.train_positions).users)
    most = max(min(c.max_train_queries, held_queries) for _, c in variants.values())
    config = base.updated({"features": every, "max_train_queries": most})
    captured: list[TrainingFrame] = []
    pipe = Pipeline(config, seed=seed)
    t0 = time.perf_counter()
    with console.status("fitting the pipeline on the training events ..."):
        pipe.fit(train, on_training_frame=captured.append)
    fit_s = time.perf_counter() - t0
    training = captured[0]
    queries = build_queries(train, split.history("valid"), split.valid)
    kept: list[tuple[np.ndarray, ...]] = []
    targets = []
    step = 1024
    with console.status("the validation candidates ...") as status:
        for a in range(0, len(queries), step):
            b = min(a + step, len(queries))
            cands = pipe.candidates(queries.batch(a, b))
            target = queries.targets(a, b)[0][:, 0]
            targets.append(target)
            hit = np.bincount(cands.query[cands.item == target[cands.query]], minlength=b - a) > 0
            rows = hit[cands.query]
            kept.append((cands.features.values[rows], cands.query[rows] + a, cands.item[rows]))
            status.update(f"the validation candidates ... {b:,}/{len(queries):,}")
    return SavedFrame(
        dataspec, seed, fit_s, pipe.source_keys, pipe.scorer_keys, training.frame.names, held_queries, most,
        training.frame.values, training.labels, training.sizes, np.repeat(training.users, training.sizes),
        training.items,
        np.vstack([k[0] for k in kept]), np.concatenate([k[1] for k in kept]), np.concatenate([k[2] for k in kept]),
        np.asarray(queries.user_idx), np.concatenate(targets))


def _compare(frame: SavedFrame, base: PipelineConfig, variants: dict[str, tuple[tuple[str, ...], PipelineConfig]],
             args: argparse.Namespace, console: Console) -> None:
    """Per variant a combiner trained on the frame's columns it names, and the validation targets ranked by it."""
    wanted = {name: min(c.max_train_queries, frame.held_queries) for name, (_, c) in variants.items()}
    if max(wanted.values()) > frame.drawn_queries:
        raise SystemExit(f"the frame's training queries were drawn from {frame.drawn_queries:,}; a variant wants "
                         f"{max(wanted.values()):,}: build it with that variant")
    missing = {g for groups, _ in variants.values() for g in groups} - _groups_of(frame) - set(DERIVED)
    if missing:
        raise SystemExit(f"the frame has no {', '.join(sorted(missing))} columns: build it with those variants")
    derived = tuple(dict.fromkeys(g for groups, _ in variants.values() for g in groups if g in DERIVED))
    train_query = np.repeat(np.arange(len(frame.train_sizes)), frame.train_sizes)
    train_frame = _with_derived(FeatureFrame(frame.names, frame.train_values), train_query, derived, frame)
    valid_frame = _with_derived(FeatureFrame(frame.names, frame.valid_values), frame.valid_query, derived, frame)
    n_queries = len(frame.valid_user)
    owner = frame.train_user[np.cumsum(frame.train_sizes) - frame.train_sizes]  # each training query's user
    rows, per_user = [], {}
    for name, (groups, settings) in variants.items():
        columns = frame.feature_names(tuple(g for g in groups if g not in DERIVED))
        columns += [c for g in groups if g in DERIVED for c in DERIVED[g](frame.source_keys)]
        with console.status(f"{name}: training its combiner ..."):
            t1 = time.process_time()
            values, labels, sizes, owners = _share_of_queries(
                _columns(train_frame, columns), frame.train_labels, frame.train_sizes, owner,
                wanted[name] / frame.drawn_queries, base.seed)
            combiner = Combiner.of_config(frame.source_keys, settings).fit(
                FeatureFrame(tuple(columns), values), labels, sizes, holdout_fraction=base.holdout_fraction,
                rng=np.random.default_rng(base.seed), owners=owners)
            combiner_s = time.process_time() - t1
        scores = combiner.score(FeatureFrame(tuple(columns), _columns(valid_frame, columns)))
        rank = np.full(n_queries, np.inf)
        got = target_ranks(frame.valid_query, frame.valid_item, scores, frame.valid_target)
        rank[np.isfinite(got)] = got[np.isfinite(got)]
        per_user[name] = rank
        trees = combiner.lightgbm_params()
        rows.append({"variant": name, "ranker": combiner.ranker, "rounds": str(combiner.best_rounds),
                     "leaves": f"{trees['num_leaves']}/{trees['min_data_in_leaf']}", "queries": str(len(sizes)),
                     "combiner CPU s": f"{combiner_s:.0f}",
                     **{f"{m}@{k}": float(np.mean(_metric(rank, m, k))) for k in (10, 20) for m in ("HR", "NDCG")}})
    first = next(iter(per_user))
    for row in rows:
        diff = _metric(per_user[row["variant"]], "NDCG", 10) - _metric(per_user[first], "NDCG", 10)
        row[f"ΔNDCG@10 vs {first}"] = float(diff.mean())
        row["p"] = _paired_p(diff)
    table = Table(title=f"{args.dataspec}: combiner variants on the validation targets ({n_queries:,} users), "
                        f"seed {args.seed}; pipeline fit {frame.fit_seconds:.0f}s", title_justify="left")
    for col in rows[0]:
        table.add_column(col, justify="left" if col in ("variant", "ranker") else "right")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"dataspec": args.dataspec, "seed": args.seed,
                                         "fit_seconds": frame.fit_seconds, "users": n_queries, "rows": rows},
                                        indent=2))
    if args.per_user:
        pl.concat([pl.DataFrame({"user_id": frame.valid_user.astype(str), "model": name,
                                 "HR@10": _metric(rank, "HR", 10), "NDCG@10": _metric(rank, "NDCG", 10)})
                   for name, rank in per_user.items()]).write_parquet(args.per_user)


def _normalised_ranks(values: FeatureFrame, query: np.ndarray, source_keys: list[str]) -> list[np.ndarray]:
    """The `nrank` group, per source: the candidate's rank in that source's list over the list's length (its
    `{key}_rr` turned back into a rank; the length counted over the query's rows in the frame, so after the
    history is dropped), in [0, 1); 1 where the source did not propose it. Measured here, from the frame, before
    it is worth a place in `aisle.pipeline.features`."""
    out = []
    for key in source_keys:
        rr = values.column(f"{key}_rr").astype(np.float64)
        present = rr > 0
        length = np.bincount(query[present], minlength=int(query.max()) + 1 if len(query) else 0)
        rank = np.where(present, 1.0 / np.where(present, rr, 1.0) - 1.0, 0.0)
        out.append(np.where(present, np.minimum(rank / np.maximum(length[query], 1), 0.999), 1.0))
    return out


#: Groups computed here from the saved frame (a trial before a group joins the pipeline): name -> the columns'
#: names for the pipeline's source keys. Their values: `_with_derived`.
DERIVED: dict[str, Callable[[list[str]], list[str]]] = {"nrank": lambda keys: [f"{k}_nrank" for k in keys]}


_DERIVED_VALUES = {"nrank": _normalised_ranks}


def _with_derived(values: FeatureFrame, query: np.ndarray, groups: tuple[str, ...], frame: SavedFrame
                  ) -> FeatureFrame:
    """`values` with the derived groups' columns appended."""
    if not groups:
        return values
    extra = [c for g in groups for c in _DERIVED_VALUES[g](values, query, frame.source_keys)]
    names = values.names + tuple(c for g in groups for c in DERIVED[g](frame.source_keys))
    return FeatureFrame(names, np.column_stack([values.values, *extra]).astype(np.float32))


def _columns(values: FeatureFrame, names: list[str]) -> np.ndarray:
    """`values.columns(names)`, without a copy when those are all its columns in order (a Beauty frame is 1 GB)."""
    return values.values if list(values.names) == names else values.columns(names)


def _metric(rank: np.ndarray, metric: str, k: int) -> np.ndarray:
    """Per user, HR@k or NDCG@k of its one target at 0-based `rank` (inf: not a candidate)."""
    return np.where(rank < k, 1.0 if metric == "HR" else 1.0 / np.log2(np.minimum(rank, 1e9) + 2.0), 0.0)


def _paired_p(diff: np.ndarray) -> float:
    """Two-sided p of a paired t-test on per-user differences (1.0 when they are all zero)."""
    from scipy import stats

    return float(stats.ttest_1samp(diff, 0.0).pvalue) if diff.any() else 1.0


def _groups_of(frame: SavedFrame) -> set[str]:
    """The optional feature groups whose columns the frame holds."""
    return {g for g in GROUPS if set(frame.feature_names((g,))) <= set(frame.names)}


def _variant(spec: str, base: PipelineConfig) -> tuple[tuple[str, ...], PipelineConfig]:
    """`GROUPS[@KEY=VALUE...]` -> (the feature groups, the configuration with those combiner settings)."""
    groups, *settings = spec.split("@")
    over: dict[str, Any] = {}
    lightgbm = dict(base.lightgbm)
    for setting in settings:
        key, _, value = setting.partition("=")
        if key == "max_train_queries" and value == "all":
            over[key] = 1 << 30
        elif key in SETTINGS:
            over[key] = float(value) if key == "bag_fraction" else int(value)
        elif key in TUNABLE:
            lightgbm[key] = float(value) if "." in value or "e" in value else int(value)
        else:
            raise SystemExit(f"variant {spec!r}: unknown setting {key!r}; accepted: {', '.join(SETTINGS + TUNABLE)}")
    return tuple(g for g in groups.split("+") if g != "none"), base.updated({**over, "lightgbm": lightgbm})


def _share_of_queries(values: np.ndarray, labels: np.ndarray, sizes: np.ndarray, owners: np.ndarray, share: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random `share` of the frame's queries (all of them at share 1), rows kept in order, with their users."""
    if share >= 1.0:
        return values, labels, sizes, owners
    pick = np.random.default_rng(seed + 1).random(len(sizes)) < share
    rows = np.repeat(pick, sizes)
    return values[rows], labels[rows], sizes[pick], owners[pick]


def target_ranks(query: np.ndarray, item: np.ndarray, scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per query, its target's 0-based rank among its candidates (ties: lower item index first, as the harness
    breaks them); inf when the target is not a candidate (the pipeline ranks every candidate above the rest)."""
    is_target = item == target[query]
    out = np.full(len(target), np.inf)
    hit_query, hit_score, hit_item = query[is_target], scores[is_target], item[is_target]
    best = np.full(len(target), np.nan)
    best[hit_query] = hit_score
    at = np.full(len(target), -1)
    at[hit_query] = hit_item
    above = (scores > best[query]) | ((scores == best[query]) & (item < at[query]))
    counted = np.bincount(query, weights=above, minlength=len(target))
    out[hit_query] = counted[hit_query]
    return out


if __name__ == "__main__":
    main()
