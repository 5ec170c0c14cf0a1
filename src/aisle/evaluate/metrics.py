"""Ranking metrics over top-K lists, vectorized over users.

Every model is compared on numbers computed by this one module, so a metric has exactly one definition
here and no model or script computes its own. All functions work on whole batches of users at once
(no Python loop over users or items), return one value per user (the reported figure is the mean over
users, taken by the caller), and take the same inputs:

- `topk`: (B, K) item indices, best first, as `protocol.top_k` or `aisle.models.base.recommend` return
  them; -1 pads a row that had fewer than K admissible items.
- `targets`: (B, T) distinct relevant item indices per user, -1 padding (T = 1 under leave-one-out;
  a 1-D array means one target per user).
- `gains`: (B, T) graded relevance aligned with `targets` (e.g. purchase 5, view 1) for graded NDCG.
- `ranks`: (B, T) 0-based position of each target in the user's full ranking over all admissible items
  (the number of admissible items ordered before it); a target that cannot be ranked (excluded as already
  seen, or ruled out by the model) has rank >= n_admissible; -1 pads like `targets`.

Conventions (the usual ones; written down because papers differ): Recall@K divides by the number of
targets; MAP@K divides by min(#targets, K); NDCG's ideal DCG places the best gains first, so graded
NDCG is 1 only when the top of the list is in gain order; a user with no targets scores 0 everywhere
(the protocol never evaluates such users).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

PAD = -1


def pad(rows: Sequence[Sequence[int]] | Sequence[np.ndarray], fill: int = PAD, dtype: type = np.int64) -> np.ndarray:
    """Ragged per-user lists -> (B, max len) array padded with `fill` (width >= 1)."""
    width = max([len(r) for r in rows], default=0) or 1
    out = np.full((len(rows), width), fill, dtype=dtype)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if lengths.sum():
        flat = np.concatenate([np.asarray(r, dtype=dtype) for r in rows if len(r)])
        row = np.repeat(np.arange(len(rows)), lengths)
        col = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[row, col] = flat
    return out


def as_targets(targets: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Accept (B,), (B, T) or ragged lists; return (B, T) int64 with -1 padding."""
    if isinstance(targets, np.ndarray):
        arr = targets.astype(np.int64, copy=False)
        return arr[:, None] if arr.ndim == 1 else arr
    return pad(targets)


def n_relevant(targets: np.ndarray) -> np.ndarray:
    """Number of targets per user."""
    return np.count_nonzero(as_targets(targets) >= 0, axis=1)


def _row_keys(items: np.ndarray, width: int) -> np.ndarray:
    rows = np.arange(items.shape[0], dtype=np.int64)[:, None]
    return rows * width + items


def gain_matrix(topk: np.ndarray, targets: np.ndarray, gains: np.ndarray | None = None) -> np.ndarray:
    """(B, K) gain of each recommended slot: the gain of the target it hits (1 when `gains` is None), else 0."""
    topk = np.asarray(topk, dtype=np.int64)
    targets = as_targets(targets)
    if topk.shape[0] != targets.shape[0]:
        raise ValueError(f"topk has {topk.shape[0]} rows but targets {targets.shape[0]}")
    width = int(max(topk.max(initial=0), targets.max(initial=0))) + 2
    tkeys = _row_keys(targets, width)[targets >= 0]
    g = np.ones(targets.shape, np.float64) if gains is None else np.asarray(gains, np.float64).reshape(targets.shape)
    tg = g[targets >= 0]
    if not len(tkeys):
        return np.zeros(topk.shape, np.float64)
    order = np.argsort(tkeys, kind="stable")
    tkeys, tg = tkeys[order], tg[order]
    qkeys = _row_keys(topk, width)
    pos = np.minimum(np.searchsorted(tkeys, qkeys), len(tkeys) - 1)
    found = (topk >= 0) & (tkeys[pos] == qkeys)
    return np.where(found, tg[pos], 0.0)


def hits(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(B, K) bool: whether each recommended slot is one of the user's targets."""
    return gain_matrix(topk, targets) > 0


def _k(matrix: np.ndarray, k: int | None) -> np.ndarray:
    return matrix if k is None else matrix[:, :k]


def hit_rate(h: np.ndarray, k: int) -> np.ndarray:
    """HR@K: 1 if any target is in the top K."""
    return _k(h, k).any(axis=1).astype(np.float64)


def recall(h: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Recall@K: targets found in the top K / number of targets."""
    found = np.count_nonzero(_k(h, k), axis=1)
    return np.divide(found, n_rel, out=np.zeros(len(found)), where=n_rel > 0)


def precision(h: np.ndarray, k: int) -> np.ndarray:
    """Precision@K: targets found in the top K / K (padding slots count as misses)."""
    return np.count_nonzero(_k(h, k), axis=1) / float(k)


def f1(h: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """F1@K: harmonic mean of Precision@K and Recall@K (0 when both are 0)."""
    p, r = precision(h, k), recall(h, n_rel, k)
    return np.divide(2 * p * r, p + r, out=np.zeros(len(p)), where=(p + r) > 0)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg(gain: np.ndarray, target_gains: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K = DCG@K / ideal DCG@K with linear gains and 1/log2(position + 2) discounts.

    `gain` is `gain_matrix(...)` (or a bool hit matrix for binary NDCG); `target_gains` holds every
    target's gain (0 for padding; for binary NDCG: `targets >= 0`), from which the ideal list is built.
    """
    g = _k(np.asarray(gain, np.float64), k)
    dcg = g @ _discounts(g.shape[1]) if g.shape[1] else np.zeros(g.shape[0])
    tg = np.asarray(target_gains, np.float64)
    tg = tg[:, None] if tg.ndim == 1 else tg
    ideal = -np.sort(-tg, axis=1)[:, :k]
    idcg = ideal @ _discounts(ideal.shape[1])
    return np.divide(dcg, idcg, out=np.zeros(len(dcg)), where=idcg > 0)


def mrr(h: np.ndarray, k: int | None = None) -> np.ndarray:
    """MRR@K: 1 / (1-based position of the first hit) if it is in the top K, else 0."""
    hk = _k(h, k)
    first = np.argmax(hk, axis=1)
    found = hk.any(axis=1) if hk.shape[1] else np.zeros(hk.shape[0], bool)
    return np.where(found, 1.0 / (first + 1.0), 0.0)


def average_precision(h: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """AP@K: mean of Precision@i over the positions i <= K that hold a target, divided by min(#targets, K)."""
    hk = _k(h, k).astype(np.float64)
    prec_at = np.cumsum(hk, axis=1) / np.arange(1, hk.shape[1] + 1)
    denom = np.minimum(n_rel, k)
    return np.divide((prec_at * hk).sum(axis=1), denom, out=np.zeros(hk.shape[0]), where=denom > 0)


def reciprocal_rank(ranks: np.ndarray, n_admissible: np.ndarray) -> np.ndarray:
    """Full MRR: 1 / (1 + rank of the best-ranked target); 0 if no target could be ranked."""
    r = np.asarray(ranks, np.int64)
    r = r[:, None] if r.ndim == 1 else r
    n_adm = np.asarray(n_admissible, np.int64)[:, None]
    ok = (r >= 0) & (r < n_adm)
    best = np.where(ok, r, np.iinfo(np.int64).max).min(axis=1)
    return np.where(ok.any(axis=1), 1.0 / (best + 1.0), 0.0)


def auc(ranks: np.ndarray, n_admissible: np.ndarray) -> np.ndarray:
    """Full-ranking AUC: per target, the fraction of admissible non-target items ranked below it; mean over targets.

    With one target this is 1 - rank / (n_admissible - 1). Other targets ranked above a target are not
    counted against it. A target that cannot be ranked scores 0; with no non-target items to rank
    against, a rankable target scores 1.
    """
    r = np.asarray(ranks, np.int64)
    r = r[:, None] if r.ndim == 1 else r
    n_adm = np.asarray(n_admissible, np.int64)[:, None]
    present = r >= 0
    ok = present & (r < n_adm)
    # ranks are distinct positions: the targets ranked above target j are the rankable ones with smaller rank
    rr = np.where(ok, r, np.iinfo(np.int64).max)
    above_pos = np.argsort(np.argsort(rr, axis=1, kind="stable"), axis=1, kind="stable")
    n_neg = n_adm - ok.sum(axis=1, keepdims=True)
    neg_above = r - above_pos
    per = np.where(n_neg > 0, 1.0 - np.divide(neg_above, n_neg, out=np.zeros(r.shape), where=n_neg > 0), 1.0)
    per = np.where(ok, per, 0.0)
    n_t = present.sum(axis=1)
    return np.divide(per.sum(axis=1), n_t, out=np.zeros(len(n_t)), where=n_t > 0)


def coverage(topk: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Catalog coverage@K: distinct items recommended to anyone / number of items."""
    t = _k(np.asarray(topk), k)
    return float(len(np.unique(t[t >= 0]))) / n_items if n_items else 0.0


def popularity_percentile(popularity: np.ndarray) -> np.ndarray:
    """Per item, its popularity percentile in [0, 1] (1 = most popular; equal counts share the average rank)."""
    p = np.asarray(popularity, np.float64)
    if len(p) < 2:
        return np.ones(len(p))
    return (rankdata(p, method="average") - 1.0) / (len(p) - 1.0)


def popularity_bias(topk: np.ndarray, percentile: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per user, the mean popularity percentile of the recommended items (NaN for an empty list)."""
    t = _k(np.asarray(topk), k)
    valid = t >= 0
    vals = np.where(valid, np.asarray(percentile)[np.where(valid, t, 0)], 0.0)
    n = valid.sum(axis=1)
    return np.divide(vals.sum(axis=1), n, out=np.full(len(n), np.nan), where=n > 0)


def ranking_metrics(
    topk: np.ndarray,
    targets: np.ndarray | Sequence[Sequence[int]],
    ks: Sequence[int],
    *,
    gains: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every top-K metric for every K in `ks`, per user: {"HR@10": (B,), "NDCG@10": (B,), ...}.

    `NDCG@K` is binary; with `gains`, `NDCG@K (graded)` is added.
    """
    tg = as_targets(targets)
    present = tg >= 0
    h = hits(topk, tg)
    n_rel = present.sum(axis=1)
    graded = gain_matrix(topk, tg, gains) if gains is not None else None
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate(h, k)
        out[f"Recall@{k}"] = recall(h, n_rel, k)
        out[f"Precision@{k}"] = precision(h, k)
        out[f"F1@{k}"] = f1(h, n_rel, k)
        out[f"NDCG@{k}"] = ndcg(h, present, k)
        if graded is not None:
            out[f"NDCG@{k} (graded)"] = ndcg(graded, np.where(present, np.asarray(gains).reshape(tg.shape), 0.0), k)
        out[f"MRR@{k}"] = mrr(h, k)
        out[f"MAP@{k}"] = average_precision(h, n_rel, k)
    return out


__all__ = [
    "PAD",
    "as_targets",
    "auc",
    "average_precision",
    "coverage",
    "f1",
    "gain_matrix",
    "hit_rate",
    "hits",
    "mrr",
    "n_relevant",
    "ndcg",
    "pad",
    "popularity_bias",
    "popularity_percentile",
    "precision",
    "ranking_metrics",
    "recall",
    "reciprocal_rank",
]


def ndcg_of_rank(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K of a single relevant item from its 0-based rank (1 / log2(rank + 2) inside the top K, else 0): the
    same discount as `ndcg`, for callers that know where the one target landed (a combiner's held-out groups)."""
    r = np.asarray(ranks, np.int64)
    return np.where((r >= 0) & (r < k), 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)
