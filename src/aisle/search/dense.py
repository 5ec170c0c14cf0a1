"""Dense retrieval: inner product over L2-normalised MiniLM vectors with faiss.

Exact search (`IndexFlatIP`) by default: it loses nothing, but it streams every vector for every query, which is
memory-bound (on the 2-core dev machine: 9-12 ms for 41k x 384 float32, single thread). Above `HNSW_THRESHOLD`
items an `IndexHNSWFlat` graph (M=32, efSearch=256) answers in ~1.5 ms for top-200 at a small recall loss (see
benchmarks/RESULTS.md "## Search"). One query is searched with one faiss thread: OpenMP over 2 shared cores made
a single flat search 4x slower (spin-waiting against other processes); batches (evaluation) use all threads.
Filtered searches score the allowed subset directly with numpy when it is small, otherwise pass faiss an
`IDSelectorBitmap`, so a filter never empties the dense candidate list.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

HNSW_THRESHOLD = 20_000
EF_SEARCH = 256
SMALL_SUBSET = 4_000  # filtered searches over fewer items score them directly


class DenseIndex:
    def __init__(self, vectors: np.ndarray, *, hnsw_threshold: int = HNSW_THRESHOLD) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = self.vectors.shape
        self.kind = "hnsw" if n > hnsw_threshold else "flat"
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = EF_SEARCH
        else:
            index = faiss.IndexFlatIP(dim)
        if n:
            index.add(self.vectors)
        self.index = index

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def search(self, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (item rows, cosine) for one normalised query vector, restricted to `mask` when given."""
        n = len(self)
        if n == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if mask is not None:
            allowed = np.flatnonzero(mask)
            if len(allowed) <= SMALL_SUBSET:
                sims = self.vectors[allowed] @ q[0]
                top = _top(sims, k)
                return allowed[top], sims[top]
            bits = np.packbits(mask.astype(bool), bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(EF_SEARCH, 2 * k)) if self.kind == "hnsw" \
                else faiss.SearchParameters(sel=sel)
            sims, rows = _single_thread(self.index, q, min(k, len(allowed)), params)
            keep = rows[0] >= 0
            return rows[0][keep].astype(np.int64), sims[0][keep]
        sims, rows = _single_thread(self.index, q, min(k, n))
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), sims[0][keep]

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and cosines for many queries at once (all threads); -1 rows pad short lists."""
        if len(self) == 0:
            return np.full((len(queries), 0), -1, np.int64), np.zeros((len(queries), 0), np.float32)
        sims, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self)))
        return rows.astype(np.int64), sims

    def similarity(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.vectors[rows] @ query.astype(np.float32)

    def with_rows(self, rows: np.ndarray, vectors: np.ndarray) -> UpsertedDenseIndex:
        """This index with items `rows` (replaced, or new past the end) now at `vectors`: a delta searched
        exactly beside the graph, which is neither copied nor changed (faiss cannot remove a vector from an HNSW
        graph, and requests may be searching it)."""
        return UpsertedDenseIndex(self, np.zeros(0, np.int64), np.zeros((0, self.vectors.shape[1]), np.float32)
                                  ).with_rows(rows, vectors)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        if self.kind == "hnsw":
            faiss.write_index(self.index, str(folder / "hnsw.faiss"))

    @classmethod
    def load(cls, folder: Path) -> DenseIndex:
        vectors = np.load(folder / "vectors.npy")
        hnsw = folder / "hnsw.faiss"
        if hnsw.exists():
            obj = cls.__new__(cls)
            obj.vectors, obj.kind, obj.index = vectors, "hnsw", faiss.read_index(str(hnsw))
            return obj
        return cls(vectors)


class UpsertedDenseIndex:
    """A `DenseIndex` plus the vectors of items upserted since it was built: the base rows they replace are
    filtered out of the base search, the delta (a few thousand vectors at most between bundles) is scored exactly,
    and the two top-k lists are merged by cosine. Same interface as `DenseIndex`."""

    def __init__(self, base: DenseIndex, rows: np.ndarray, vectors: np.ndarray) -> None:
        self.base, self.rows, self.delta = base, rows, vectors  # rows ascending, vectors aligned
        self.kind = base.kind
        self._stale = rows[rows < len(base)]
        self._n = max(len(base), int(rows.max()) + 1 if len(rows) else 0)

    def __len__(self) -> int:
        return self._n

    def with_rows(self, rows: np.ndarray, vectors: np.ndarray) -> UpsertedDenseIndex:
        keep = ~np.isin(self.rows, rows)
        all_rows = np.concatenate([self.rows[keep], np.asarray(rows, np.int64)])
        all_vectors = np.concatenate([self.delta[keep], np.asarray(vectors, np.float32)])
        o = np.argsort(all_rows, kind="stable")
        return UpsertedDenseIndex(self.base, all_rows[o], np.ascontiguousarray(all_vectors[o]))

    @property
    def vectors(self) -> np.ndarray:
        """Every item's vector (a full copy: for saving and batch work, not for requests)."""
        out = np.zeros((self._n, self.delta.shape[1]), np.float32)
        out[: len(self.base)] = self.base.vectors
        out[self.rows] = self.delta
        return out

    def search(self, query: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        n_base = len(self.base)
        base_mask = None
        if mask is not None or len(self._stale):
            base_mask = mask[:n_base].copy() if mask is not None else np.ones(n_base, bool)
            base_mask[self._stale] = False
        rows, sims = self.base.search(query, k, base_mask)
        allowed = np.flatnonzero(mask[self.rows]) if mask is not None else np.arange(len(self.rows))
        if len(allowed) and k > 0:
            own = self.delta[allowed] @ query.reshape(-1).astype(np.float32)
            rows = np.concatenate([rows, self.rows[allowed]])
            sims = np.concatenate([sims, own])
            top = _top(sims, k)
            rows, sims = rows[top], sims[top]
        return rows.astype(np.int64), sims

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_rows = np.full((len(queries), k), -1, np.int64)
        out_sims = np.zeros((len(queries), k), np.float32)
        for i, q in enumerate(queries):
            rows, sims = self.search(q, k)
            out_rows[i, :len(rows)], out_sims[i, :len(rows)] = rows, sims
        return out_rows, out_sims

    def similarity(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        at = np.searchsorted(self.rows, rows)
        inside = at < len(self.rows)
        inside[inside] = self.rows[at[inside]] == rows[inside]
        out = np.empty(len(rows), np.float32)
        q = query.astype(np.float32)
        out[~inside] = self.base.vectors[rows[~inside]] @ q
        out[inside] = self.delta[at[inside]] @ q
        return out

    def save(self, folder: Path) -> None:
        DenseIndex(self.vectors).save(folder)


def _single_thread(index: faiss.Index, q: np.ndarray, k: int,
                   params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(q, k, params=params)
    finally:
        faiss.omp_set_num_threads(before)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    if len(scores) <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
