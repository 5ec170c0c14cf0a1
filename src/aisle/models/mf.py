"""Matrix factorisation through `implicit`: ALS (Hu, Koren & Volinsky 2008) and BPR (Rendle et al. 2009).

Why `implicit`: its native CPU kernels (and CUDA ones, used when `implicit.gpu.HAS_CUDA`) are the fastest
well-tested implementations there are; we own only the glue. Design choices:

- Fitting uses the binary user x item matrix, each interacted pair with confidence `alpha` (ALS), or the
  summed event weights scaled to a mean of 1 when `weighted` (a purchase then counts more than a view).
- A known user is scored with the factors learned for them. An unknown user (a new session, a visitor
  the model never saw) is *folded in* from their history against the fixed item factors. ALS: the closed-form
  user step x = (YᵀY + λI + (c−1) Σ_h y_h y_hᵀ)⁻¹ c Σ_h y_h, exactly the half-step ALS itself takes, batched
  (one padded batched matmul and one batched solve per chunk of queries, never a per-user Python loop).
  BPR: the mean of the history's item factors (a squared-loss step does not fit factors trained to rank).
- BPR trains with one thread by default: `implicit`'s multi-threaded SGD is Hogwild and not reproducible,
  and determinism under a seed is part of the model contract. ALS is deterministic with any thread count.
- BLAS is held to one thread while fitting (the native kernels parallelise themselves; a BLAS pool on top
  of them makes ALS many times slower).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from aisle.models.base import QueryBatch, TrainData, read_config, write_config
from aisle.models.common import history_matrix, load_array, topk_dense

_CHUNK = 256  # queries per batched fold-in solve


def _use_gpu(flag: bool | None) -> bool:
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA) if flag is None else flag


def _train_matrix(data: TrainData, weighted: bool) -> sp.csr_matrix:
    if not weighted:
        return data.matrix(binary=True)
    m = data.matrix()
    if m.nnz:
        m.data /= m.data.mean()
    return m


class _FactorModel:
    """Shared scoring, fold-in, similarity and persistence of a factor model."""

    name: ClassVar[str]
    user_factors: np.ndarray | None
    item_factors: np.ndarray | None

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    # the parts of the factors the dot product uses, and a per-item bias (BPR keeps it in a last column)
    def _split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.user_factors is not None and self.item_factors is not None
        return self.user_factors, self.item_factors, np.zeros(self.item_factors.shape[0], np.float32)

    def fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """Factors for users known only by their histories."""
        raise NotImplementedError

    def _user_vectors(self, batch: QueryBatch) -> np.ndarray:
        x, _, _ = self._split()
        users = np.asarray(batch.user_idx, dtype=np.int64)
        known = (users >= 0) & (users < len(x))
        vec = np.zeros((len(batch), x.shape[1]), np.float32)
        vec[known] = x[users[known]]
        unknown = np.flatnonzero(~known)
        if len(unknown):
            vec[unknown] = self.fold_in([np.asarray(batch.histories[i], np.int64) for i in unknown])
        return vec

    def score(self, batch: QueryBatch) -> np.ndarray:
        if self.item_factors is None:
            raise RuntimeError(f"{self.name} is not fitted")
        _, y, bias = self._split()
        return np.asarray(self._user_vectors(batch) @ y.T + bias[None, :], dtype=np.float32)

    def user_vectors(self, batch: QueryBatch) -> np.ndarray:
        """Query vectors with `score(batch) == user_vectors(batch) @ item_vectors().T` (ANN retrieval): the user
        factors (folded in for unknown users), plus a constant 1 when the model has item biases."""
        if self.item_factors is None:
            raise RuntimeError(f"{self.name} is not fitted")
        vec = self._user_vectors(batch)
        return np.hstack([vec, np.ones((len(vec), 1), np.float32)]) if self._split()[2].any() else vec

    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) item factors, plus the bias column when there is one."""
        if self.item_factors is None:
            raise RuntimeError(f"{self.name} is not fitted")
        _, y, bias = self._split()
        y = np.asarray(y, np.float32)
        return np.hstack([y, bias[:, None].astype(np.float32)]) if bias.any() else y

    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine between item factors; an item without factors (never interacted with) has no neighbours."""
        if self.item_factors is None:
            raise RuntimeError(f"{self.name} is not fitted")
        _, y, _ = self._split()
        norms = np.linalg.norm(y, axis=1)
        unit = y / np.maximum(norms, 1e-12)[:, None]
        items = np.asarray(items, dtype=np.int64)
        ok = (items >= 0) & (items < len(y))
        ok[ok] &= norms[items[ok]] > 0
        sims = np.where(ok[:, None], unit[np.where(ok, items, 0)] @ unit.T, -np.inf)
        sims[:, norms == 0] = -np.inf
        return topk_dense(sims, k, exclude_self=items)

    def save(self, path: Path) -> None:
        if self.item_factors is None or self.user_factors is None:
            raise RuntimeError(f"{self.name} is not fitted")
        write_config(path, self.name, self._config())
        np.save(path / "user_factors.npy", self.user_factors)
        np.save(path / "item_factors.npy", self.item_factors)

    @classmethod
    def load(cls, path: Path) -> Self:
        model = cls(**read_config(path, cls.name))
        model.user_factors = load_array(path / "user_factors.npy")
        model.item_factors = load_array(path / "item_factors.npy")
        return model

    def _store(self, fitted: Any) -> None:
        if hasattr(fitted, "to_cpu"):  # a GPU model
            fitted = fitted.to_cpu()
        self.user_factors = np.ascontiguousarray(fitted.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(fitted.item_factors, dtype=np.float32)


class ALS(_FactorModel):
    """Implicit-feedback ALS. Defaults: Beauty validation NDCG@10 0.0468 (512 factors: 0.0475 at 6x the time)."""

    name: ClassVar[str] = "als"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [256, 128],
        "regularization": [1.0, 10.0],
        "alpha": [20.0, 5.0],
    }

    def __init__(self, factors: int = 256, regularization: float = 1.0, alpha: float = 20.0, iterations: int = 15,
                 weighted: bool = False, seed: int = 0, use_gpu: bool | None = None, num_threads: int = 0) -> None:
        self.factors, self.regularization, self.alpha, self.iterations = factors, regularization, alpha, iterations
        self.weighted, self.seed, self.use_gpu, self.num_threads = weighted, seed, use_gpu, num_threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def _config(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha,
                "iterations": self.iterations, "weighted": self.weighted, "seed": self.seed,
                "use_gpu": self.use_gpu, "num_threads": self.num_threads}

    def fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """Factors of users known only by their histories (closed-form ALS step against the item factors)."""
        _, y, _ = self._split()
        conf, l2 = self.alpha, self.regularization
        k = y.shape[1]
        y64 = y.astype(np.float64)
        gram = y64.T @ y64 + l2 * np.eye(k)
        hist = [np.unique(h[(h >= 0) & (h < len(y))]) for h in histories]
        lengths = np.fromiter((len(h) for h in hist), dtype=np.int64, count=len(hist))
        order = np.argsort(lengths, kind="stable")  # similar lengths share a chunk: little padding
        order = order[lengths[order] > 0]  # an empty history folds in to the zero vector
        out = np.zeros((len(hist), k), np.float32)
        for start in range(0, len(order), _CHUNK):  # chunks of queries, each solved as one batch
            rows = order[start:start + _CHUNK]
            width = int(lengths[rows].max())
            idx = np.zeros((len(rows), width), np.int64)
            mask = np.arange(width)[None, :] < lengths[rows][:, None]
            idx[mask] = np.concatenate([hist[r] for r in rows])
            yh = y64[idx] * mask[:, :, None]
            a = gram[None] + (conf - 1.0) * np.matmul(yh.transpose(0, 2, 1), yh)
            rhs = conf * yh.sum(axis=1)
            with threadpool_limits(1, "blas"):  # small batched solves: a BLAS thread pool only adds overhead
                out[rows] = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
        return out

    def fit(self, data: TrainData) -> Self:
        from implicit.als import AlternatingLeastSquares

        with threadpool_limits(1, "blas"):  # implicit checks the BLAS pool when the model is built
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations, random_state=self.seed,
                                            use_gpu=_use_gpu(self.use_gpu), num_threads=self.num_threads)
            model.fit(_train_matrix(data, self.weighted), show_progress=False)
        self._store(model)
        return self


class BPR(_FactorModel):
    """Pairwise-ranking MF. Defaults: best found on Beauty validation (NDCG@10 0.0252; BPR is weak there)."""

    name: ClassVar[str] = "bpr"
    search_space: ClassVar[dict[str, list[Any]]] = {
        "factors": [128, 64],
        "learning_rate": [0.1, 0.05],
        "regularization": [0.001, 0.01],
    }

    def __init__(self, factors: int = 128, learning_rate: float = 0.1, regularization: float = 0.001,
                 iterations: int = 200, seed: int = 0, use_gpu: bool | None = None,
                 num_threads: int = 1) -> None:
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.seed = iterations, seed
        self.use_gpu, self.num_threads = use_gpu, num_threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def _config(self) -> dict[str, Any]:
        return {"factors": self.factors, "learning_rate": self.learning_rate, "regularization": self.regularization,
                "iterations": self.iterations, "seed": self.seed,
                "use_gpu": self.use_gpu, "num_threads": self.num_threads}

    def _split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # implicit's BPR appends a bias column to the items and a constant 1 column to the users
        assert self.user_factors is not None and self.item_factors is not None
        return self.user_factors[:, :-1], self.item_factors[:, :-1], self.item_factors[:, -1]

    def fold_in(self, histories: list[np.ndarray]) -> np.ndarray:
        """The mean of the history's item factors: BPR's factors are trained for ranking, not for the squared
        loss of an ALS step (which collapses them towards zero on Beauty: NDCG@10 0.0005 against 0.017 here)."""
        _, y, _ = self._split()
        h = history_matrix(histories, len(y))
        n = np.asarray(h.sum(axis=1)).ravel()
        return np.asarray(sp.diags(1.0 / np.maximum(n, 1.0)) @ h @ y, dtype=np.float32)

    def fit(self, data: TrainData) -> Self:
        from implicit.bpr import BayesianPersonalizedRanking

        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                                regularization=self.regularization, iterations=self.iterations,
                                                random_state=self.seed, use_gpu=_use_gpu(self.use_gpu),
                                                num_threads=self.num_threads)
            model.fit(data.matrix(binary=True), show_progress=False)
        self._store(model)
        return self
