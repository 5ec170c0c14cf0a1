"""Offline evaluation of a fitted Recommender on a Split, by the published protocol unless told otherwise.

Why it is built this way:

- Full ranking over ALL items of the dataset is the default. Metrics over a sample of negatives
  overstate quality and can reorder models (Krichene & Rendle, KDD 2020), so sampling exists only
  behind the explicit `sampled=N` parameter, and every number it produces is labelled with it
  (`"HR@10 (sampled-100)"`, `"sampled": 100`), so a sampled figure can never pass for a full-ranking one.
- Items in the query's history (for stage "valid": the training events; for "test": training events
  plus the validation target, `Split.history("test")`) are excluded from the ranking, as in the
  published leave-one-out protocol. A target that is itself in the history can then not be ranked: it
  counts as a miss (reported as `unreachable_targets`, never silently dropped).
- Ties are broken by item index, lower first, everywhere (top-K lists and full ranks agree). With the
  item vocabulary of `item_vocab` (ids in order of first appearance in the source) this is the order the
  S3-Rec files number their items in, and it is the rule that reproduces the published PopRec baseline
  on Amazon Beauty to four decimals (see tests/unit/evaluate/test_parity.py): breaking ties the other
  way, optimistically or pessimistically gives other numbers.
- Users are scored in batches into one reused buffer; top-K comes from torch.topk (plus an exact fix-up
  where the K-th score is tied) and the rank of each target from one vectorized count of the scores
  above it, so the full-ranking evaluation of Amazon Sports (35,598 users x 18,357 items) takes seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import torch

from aisle.data.splits import Split
from aisle.evaluate import metrics as mx
from aisle.models.base import EVENT_WEIGHTS, QueryBatch, Recommender, TrainData, Vocab

DEFAULT_KS: tuple[int, ...] = (10, 20)
STAGES = ("valid", "test")

#: Floats per score buffer (64 MiB): the batch size is this divided by the number of items.
_BUFFER_FLOATS = 1 << 24

Progress = Callable[[int, int], None]
"""Called as progress(users_done, users_total) after each batch."""


def item_vocab(events: pl.DataFrame, items: pl.DataFrame | None = None) -> Vocab:
    """All items of a dataset: ids in order of first appearance in `events` (source order), then catalog-only items.

    This is the ranking vocabulary of every evaluation (full ranking over all items), and its order is
    the tie-break order (see the module docstring).
    """
    seen = events["item_id"].drop_nulls().unique(maintain_order=True).to_list()
    extra = items["item_id"].to_list() if items is not None and items.height else []
    return Vocab.of([*seen, *extra])


def label(name: str, sampled: int | None) -> str:
    """A metric's reported name: `HR@10`, or `HR@10 (sampled-100)` under sampled negatives."""
    return name if sampled is None else f"{name} (sampled-{sampled})"


# ---- ranking primitives -------------------------------------------------------------------------


def _writable_f32(scores: np.ndarray) -> np.ndarray:
    return np.require(scores, dtype=np.float32, requirements=["C_CONTIGUOUS", "WRITEABLE"])


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores per row, best first; ties go to the lower index; -inf slots become -1.

    NaN scores count as -inf. Exact for any ties: torch.topk picks k+1 candidates; rows whose k-th and
    (k+1)-th scores are equal (where torch's choice among equal scores is arbitrary) are redone by index.
    """
    s = _writable_f32(scores)
    if s.size and np.isnan(s.max()):
        s = np.where(np.isnan(s), np.float32(-np.inf), s)
    return _top_k(s, k)


def _top_k(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n_rows, n = s.shape
    k = min(k, n)
    if k <= 0 or n_rows == 0:
        return np.empty((n_rows, 0), np.int64), np.empty((n_rows, 0), np.float32)
    kk = min(k + 1, n)
    v, i = torch.topk(torch.from_numpy(s), kk, dim=1, sorted=True)
    cand = v.numpy()
    vals, idx = cand[:, :k].copy(), i.numpy()[:, :k].astype(np.int64)
    if kk > k:
        tied = np.flatnonzero(cand[:, k - 1] == cand[:, k])
        if len(tied):
            sub = s[tied]
            kth = vals[tied, k - 1][:, None]
            gt = sub > kth
            eq = sub == kth
            need = k - gt.sum(axis=1, keepdims=True)
            sel = gt | (eq & (np.cumsum(eq, axis=1) <= need))
            cols = np.nonzero(sel)[1].reshape(len(tied), k)
            idx[tied] = cols
            vals[tied] = np.take_along_axis(sub, cols, axis=1)
    order = np.lexsort((idx, -vals), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    idx[np.isneginf(vals)] = -1
    return idx, vals


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """True values per row of a 2-D bool array (packed popcount: several times faster than count_nonzero)."""
    return np.bitwise_count(np.packbits(mask, axis=1)).sum(axis=1, dtype=np.int64)


def target_ranks(
    scores: np.ndarray,
    targets: np.ndarray | Sequence[Sequence[int]],
    n_admissible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ranks, n_admissible): each target's 0-based position in the full ranking of its row, ties by index.

    Admissible items are those with a score above -inf (exclusions are -inf); pass `n_admissible` when
    it is known, to save a pass. A target that is not admissible gets rank n_admissible (it cannot be
    ranked); padding (-1) gets -1. Agrees with `top_k`: a target is in the top k exactly when its rank < k.
    """
    s = np.asarray(scores, dtype=np.float32)
    tg = mx.as_targets(targets)
    n_rows, n = s.shape
    n_adm = _row_counts(s > -np.inf) if n_admissible is None else np.asarray(n_admissible)
    ranks = np.full(tg.shape, -1, np.int64)
    n_bytes = (n + 7) // 8
    byte_pos = np.arange(n_bytes)
    for j in range(tg.shape[1]):
        rows = np.flatnonzero(tg[:, j] >= 0)
        if not len(rows):
            continue
        sub = s if len(rows) == n_rows else s[rows]
        col = tg[rows, j]
        t = sub[np.arange(len(rows)), col][:, None]
        # before the target: a higher score, or an equal score at a lower index. The equal-score items
        # are counted in packed bits under a mask of the positions < col (bit order of np.packbits).
        greater = np.packbits(sub > t, axis=1)
        equal = np.packbits(sub == t, axis=1)
        full, part = (col // 8)[:, None], (col % 8)[:, None]
        partial = ((0xFF00 >> part) & 0xFF).astype(np.uint8)
        prefix = np.where(byte_pos < full, np.uint8(0xFF), np.where(byte_pos == full, partial, np.uint8(0)))
        r = (np.bitwise_count(greater).sum(axis=1, dtype=np.int64)
             + np.bitwise_count(equal & prefix).sum(axis=1, dtype=np.int64))
        ranks[rows, j] = np.where(t[:, 0] > -np.inf, r, n_adm[rows])
    return ranks, n_adm


# ---- queries ------------------------------------------------------------------------------------


def _csr(rows: np.ndarray, n_rows: int) -> np.ndarray:
    ptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=ptr[1:])
    return ptr


@dataclass(frozen=True)
class Queries:
    """The evaluated users (rows, in user-id order) as flat arrays: the model's user index, the history it
    may see (time order), the items excluded from its ranking and its targets with their gains (CSR)."""

    user_ids: np.ndarray
    user_idx: np.ndarray
    hist_ptr: np.ndarray
    hist_items: np.ndarray
    excl_ptr: np.ndarray
    excl_items: np.ndarray
    tgt_ptr: np.ndarray
    tgt_items: np.ndarray
    tgt_gains: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)

    def batch(self, a: int, b: int) -> QueryBatch:
        p = self.hist_ptr
        flat = self.hist_items[p[a]:p[b]]
        return QueryBatch(self.user_idx[a:b], np.split(flat, p[a + 1:b] - p[a]))

    @staticmethod
    def _pairs(ptr: np.ndarray, items: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.repeat(np.arange(b - a), np.diff(ptr[a:b + 1]))
        return rows, items[ptr[a]:ptr[b]]

    def excluded(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs to exclude for rows a..b (rows relative to a)."""
        return self._pairs(self.excl_ptr, self.excl_items, a, b)

    def targets(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) targets padded with -1 and (B, T) gains padded with 0, for rows a..b."""
        rows, items = self._pairs(self.tgt_ptr, self.tgt_items, a, b)
        counts = np.diff(self.tgt_ptr[a:b + 1])
        width = max(int(counts.max(initial=0)), 1)
        col = np.arange(len(items)) - np.repeat(self.tgt_ptr[a:b] - self.tgt_ptr[a], counts)
        tg = np.full((b - a, width), -1, np.int64)
        gains = np.zeros((b - a, width), np.float64)
        tg[rows, col] = items
        gains[rows, col] = self.tgt_gains[self.tgt_ptr[a]:self.tgt_ptr[b]]
        return tg, gains


def build_queries(
    train: TrainData,
    history: pl.DataFrame,
    targets: pl.DataFrame,
    *,
    exclude_seen: bool = True,
    exclude_types: Iterable[str] | None = None,
    weights: Mapping[str, float] = EVENT_WEIGHTS,
) -> Queries:
    """One query per user with at least one target event.

    `train` is the TrainData the model was fitted on (its user and item vocabularies); `history` holds
    the events the model may see at prediction time; `targets` the events to predict. A target's gain is
    the largest `weights` value of its events (a purchased item outranks a viewed one in graded NDCG).
    Excluded items: those in the history (of `exclude_types` only, when given) unless `exclude_seen` is off.
    """
    n_items = len(train.items)
    vocab = pl.DataFrame({"item_id": pl.Series(train.items.ids.tolist(), dtype=pl.String),
                          "item_idx": pl.Series(np.arange(n_items), dtype=pl.Int64)})
    weight = pl.col("event_type").replace_strict(dict(weights), default=1.0, return_dtype=pl.Float64)
    tg = targets.filter(pl.col("item_id").is_not_null()).join(vocab, on="item_id", how="left")
    unknown = tg.filter(pl.col("item_idx").is_null())
    if unknown.height:
        raise ValueError(f"{unknown.height} target events name items outside the ranking vocabulary (e.g. "
                         f"{unknown['item_id'][0]!r}): fit with items=item_vocab(...) of the whole dataset")
    tg = tg.group_by("user_id", "item_idx").agg(weight.max().alias("gain"))
    users = tg["user_id"].unique().sort()
    user_rows = pl.DataFrame({"user_id": users, "_row": pl.Series(np.arange(len(users)), dtype=pl.Int64)})
    tg = tg.join(user_rows, on="user_id").sort("_row", "item_idx")

    hist = (history.filter(pl.col("item_id").is_not_null()).with_row_index("_o")
            .join(user_rows, on="user_id").join(vocab, on="item_id")
            .sort("_row", "timestamp", "_o"))
    seen = hist.filter(weight > 0)
    n_rows = len(users)
    if exclude_seen:
        ex = hist if exclude_types is None else hist.filter(pl.col("event_type").is_in(list(exclude_types)))
        ex = ex.unique(["_row", "item_idx"]).sort("_row", "item_idx")
    else:
        ex = hist.clear()
    return Queries(
        user_ids=np.asarray(users.to_list(), dtype=object),
        user_idx=train.users.encode(users.to_list()),
        hist_ptr=_csr(seen["_row"].to_numpy(), n_rows),
        hist_items=seen["item_idx"].to_numpy().astype(np.int64),
        excl_ptr=_csr(ex["_row"].to_numpy(), n_rows),
        excl_items=ex["item_idx"].to_numpy().astype(np.int64),
        tgt_ptr=_csr(tg["_row"].to_numpy(), n_rows),
        tgt_items=tg["item_idx"].to_numpy().astype(np.int64),
        tgt_gains=tg["gain"].to_numpy().astype(np.float64),
    )


# ---- evaluation ---------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """Mean metrics over the evaluated users, plus per-user values (rows in `users` order) for paired tests."""

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    users: np.ndarray = field(repr=False)
    stage: str
    n_items: int
    sampled: int | None
    seconds: float
    score_seconds: float
    unreachable_targets: int
    n_targets: int

    @property
    def n_users(self) -> int:
        return len(self.users)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.metrics)
        out.update(n_evaluated=self.n_users, n_targets=self.n_targets, unreachable_targets=self.unreachable_targets)
        if self.sampled is not None:
            out["sampled"] = self.sampled
        return out


def _batch_rows(n_items: int, batch_size: int | None) -> int:
    if batch_size is not None:
        return max(1, batch_size)
    return int(np.clip(_BUFFER_FLOATS // max(n_items, 1), 64, 4096))


def evaluate_queries(
    model: Recommender,
    queries: Queries,
    n_items: int,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    popularity: np.ndarray | None = None,
    sampled: int | None = None,
    seed: int = 0,
    graded: bool = False,
    batch_size: int | None = None,
    stage: str = "test",
    progress: Progress | None = None,
) -> EvalResult:
    """Score `queries` with `model` batch by batch and compute every metric (see `evaluate`)."""
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"cut-offs must be positive integers, got {ks}")
    if sampled is not None and sampled < 1:
        raise ValueError(f"sampled must be a positive number of negatives, got {sampled}")
    t_start = time.perf_counter()
    n_q = len(queries)
    rows_per_batch = _batch_rows(n_items, batch_size)
    buf = np.empty((min(rows_per_batch, max(n_q, 1)), n_items), np.float32)
    rng = np.random.default_rng(seed)
    kmax = ks[-1]
    per_user: dict[str, list[np.ndarray]] = {}
    recommended = np.zeros((len(ks), n_items), bool)
    pct = mx.popularity_percentile(popularity) if popularity is not None else None
    score_s = 0.0
    unreachable = 0
    for a in range(0, n_q, rows_per_batch):
        b = min(a + rows_per_batch, n_q)
        m = b - a
        t0 = time.perf_counter()
        scores = model.score(queries.batch(a, b))
        score_s += time.perf_counter() - t0
        if getattr(scores, "shape", None) != (m, n_items):
            raise ValueError(f"{type(model).__name__}.score returned shape {getattr(scores, 'shape', None)}, "
                             f"expected {(m, n_items)}")
        s = buf[:m]
        np.copyto(s, scores, casting="same_kind")
        lowest = s.min()
        if np.isnan(lowest):
            s[np.isnan(s)] = -np.inf
            lowest = -np.inf
        ex_rows, ex_cols = queries.excluded(a, b)
        s[ex_rows, ex_cols] = -np.inf
        tg, gains = queries.targets(a, b)
        if sampled is not None:
            _restrict_to_sample(s, tg, ex_rows, ex_cols, sampled, rng)
        if sampled is not None or lowest == -np.inf:
            n_adm = _row_counts(s > -np.inf)
        else:  # exclusions are distinct per row, and nothing else is -inf
            n_adm = n_items - np.bincount(ex_rows, minlength=m)
        top, _ = _top_k(s, kmax)
        ranks, n_adm = target_ranks(s, tg, n_adm)
        unreachable += int(np.count_nonzero((tg >= 0) & (ranks >= n_adm[:, None])))
        values = mx.ranking_metrics(top, tg, ks, gains=gains if graded else None)
        values["MRR"] = mx.reciprocal_rank(ranks, n_adm)
        values["AUC"] = mx.auc(ranks, n_adm)
        for i, k in enumerate(ks):
            t = top[:, :k]
            recommended[i, t[t >= 0]] = True
            if pct is not None:
                values[f"PopBias@{k}"] = mx.popularity_bias(top, pct, k)
        for name, v in values.items():
            per_user.setdefault(name, []).append(v)
        if progress is not None:
            progress(b, n_q)
    per = {label(name, sampled): np.concatenate(v) for name, v in per_user.items()}
    means = {name: (float(np.nanmean(v)) if len(v) and not np.isnan(v).all() else 0.0) for name, v in per.items()}
    for i, k in enumerate(ks):
        means[label(f"Coverage@{k}", sampled)] = float(recommended[i].sum()) / n_items if n_items else 0.0
    ordered = _order_metrics(means, ks, sampled)
    return EvalResult(metrics=ordered, per_user=per, users=queries.user_ids, stage=stage, n_items=n_items,
                      sampled=sampled, seconds=time.perf_counter() - t_start, score_seconds=score_s,
                      unreachable_targets=unreachable, n_targets=len(queries.tgt_items))


def _order_metrics(means: dict[str, float], ks: Sequence[int], sampled: int | None) -> dict[str, float]:
    names = []
    for k in ks:
        names += [f"HR@{k}", f"Recall@{k}", f"NDCG@{k}", f"NDCG@{k} (graded)", f"MRR@{k}", f"MAP@{k}",
                  f"Precision@{k}", f"F1@{k}", f"Coverage@{k}", f"PopBias@{k}"]
    names += ["MRR", "AUC"]
    out = {label(n, sampled): means[label(n, sampled)] for n in names if label(n, sampled) in means}
    out.update({n: v for n, v in means.items() if n not in out})
    return out


def _restrict_to_sample(s: np.ndarray, tg: np.ndarray, ex_rows: np.ndarray, ex_cols: np.ndarray, n_neg: int,
                        rng: np.random.Generator) -> None:
    """Keep, per row, the targets and `n_neg` negatives drawn uniformly (without replacement) from the
    items that are neither excluded nor targets; every other item becomes -inf."""
    m, n = s.shape
    r = rng.random((m, n), dtype=np.float32)
    r[ex_rows, ex_cols] = 2.0
    t_rows, t_cols = np.nonzero(tg >= 0)
    r[t_rows, tg[t_rows, t_cols]] = 2.0
    keep = np.zeros((m, n), bool)
    if n_neg < n:
        neg = np.argpartition(r, n_neg - 1, axis=1)[:, :n_neg]
        ok = np.take_along_axis(r, neg, axis=1) < 2.0
        keep[np.nonzero(ok)[0], neg[ok]] = True
    else:
        keep = r < 2.0
    keep[t_rows, tg[t_rows, t_cols]] = True
    s[~keep] = -np.inf


def evaluate(
    model: Recommender,
    train: TrainData,
    split: Split,
    stage: str = "test",
    *,
    ks: Sequence[int] = DEFAULT_KS,
    target_types: Iterable[str] | None = None,
    exclude_seen: bool = True,
    exclude_types: Iterable[str] | None = None,
    sampled: int | None = None,
    seed: int = 0,
    graded: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate `model` (fitted on `train`) on the `stage` targets of `split`.

    The query history is `split.history(stage)` (stage "valid": the training events; "test": plus the
    validation targets). Targets are the stage's events (of `target_types` only, when given). Every
    item of `train.items` is ranked: fit the model with `TrainData.from_events(..., items=item_vocab(...))`
    so that the vocabulary is the whole dataset's. `sampled=N` ranks each target among N sampled
    negatives instead (seeded by `seed`, drawn batch by batch: the same seed and batch size give the same
    sample; labelled in every metric name). `graded` adds NDCG with the
    targets' event-type gains. Items of the user's history are excluded (see `build_queries`).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    t_start = time.perf_counter()
    targets = split.valid if stage == "valid" else split.test
    if target_types is not None:
        targets = targets.filter(pl.col("event_type").is_in(list(target_types)))
    queries = build_queries(train, split.history(stage), targets, exclude_seen=exclude_seen,
                            exclude_types=exclude_types)
    ev = train.events.filter(pl.col("weight") > 0)
    popularity = np.bincount(ev["item_idx"].to_numpy(), minlength=train.n_items)
    result = evaluate_queries(model, queries, train.n_items, ks=ks, popularity=popularity, sampled=sampled,
                              seed=seed, graded=graded, batch_size=batch_size, stage=stage, progress=progress)
    result.seconds = time.perf_counter() - t_start  # building the queries included
    return result


RECALL_DEPTHS: tuple[int, ...] = (50, 100, 200)


def candidate_recall(model: Any, train: TrainData, split: Split, stage: str = "test", *,
                     depths: Sequence[int] = RECALL_DEPTHS, target_types: Iterable[str] | None = None,
                     exclude_seen: bool = True, exclude_types: Iterable[str] | None = None,
                     batch_size: int | None = None) -> dict[str, Any] | None:
    """For a model that ranks candidates from several sources (`model.candidate_recall`, the pipeline): on the
    `stage` targets, the share of targets among the first d candidates of each source and of the merged list,
    for each d of `depths`, and the mean merged candidates per query. None for a model without sources.

    The same queries as `evaluate` (history, targets); the model's own candidates already leave the history out."""
    if not callable(getattr(model, "candidate_recall", None)):
        return None
    targets = split.valid if stage == "valid" else split.test
    if target_types is not None:
        targets = targets.filter(pl.col("event_type").is_in(list(target_types)))
    queries = build_queries(train, split.history(stage), targets, exclude_seen=exclude_seen,
                            exclude_types=exclude_types)
    depths = tuple(sorted({int(d) for d in depths}))
    step = _batch_rows(train.n_items, batch_size)
    parts: dict[str, list[np.ndarray]] = {}
    for a in range(0, len(queries), step):
        b = min(a + step, len(queries))
        for key, values in model.candidate_recall(queries.batch(a, b), queries.targets(a, b)[0], depths).items():
            parts.setdefault(key, []).append(values)
    if not parts:
        return None
    pool = np.concatenate(parts.pop("pool"))
    recall = {key: {f"@{d}": float(np.nanmean(v[:, i])) if np.isfinite(v[:, i]).any() else 0.0
                    for i, d in enumerate(depths)}
              for key, v in ((key, np.concatenate(chunks)) for key, chunks in parts.items())}
    # what ranks the merged list (the combiner, or the one source that beat it on held-out queries) and the scores
    # it was chosen by: without it, a pipeline that fell back to one source reads like a combination that
    # happened to score the same
    choice = {"ranker": model.ranker, "selection": dict(model.selection)} if hasattr(model, "ranker") else {}
    return {"stage": stage, "depths": list(depths), "recall": recall, "mean_candidates": float(pool.mean()),
            **choice}


__all__ = [
    "DEFAULT_KS",
    "RECALL_DEPTHS",
    "EvalResult",
    "Queries",
    "build_queries",
    "candidate_recall",
    "evaluate",
    "evaluate_queries",
    "item_vocab",
    "label",
    "target_ranks",
    "top_k",
]
