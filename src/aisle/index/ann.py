"""Top-k item retrieval by inner product over an item table: exact, quantised exact, and faiss ANN indexes.

Kinds (`IndexSpec.kind`):

- `exact`: every item scored in fp32 (`IndexFlatIP`); the reference every other kind is measured against.
- `exact-fp16`, `exact-int8`: every item scored from a half-precision / 8-bit table (`IndexScalarQuantizer`,
  per-dimension ranges for int8): 2x / 4x less memory, approximate scores.
- `hnsw`, `hnsw-sq8`: an HNSW graph (M neighbours per node) over fp32 / 8-bit vectors; `ef_search` trades
  speed for recall.
- `ivf`, `ivf-sq8`, `ivf-pq`: k-means inverted lists (`nlist`), `nprobe` lists scanned per query, vectors in
  fp32 / 8 bits / product-quantised codes of `pq_m` bytes.

Approximate kinds search the exact MIPS -> L2 reduction of `aisle.index.vectors` (HNSW's graph and IVF's
k-means are built for distances), and `refine` > 0 re-scores `refine * k` candidates with the fp32 vectors.
Returned scores are inner products in every kind, so a caller never needs to know which index answered.
One query searches with one faiss thread (as `aisle.search.dense` does: OpenMP over shared cores made single
searches slower); batches use every thread.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from aisle.index.vectors import augment_items, augment_queries

EXACT_KINDS = ("exact", "exact-fp16", "exact-int8")
ANN_KINDS = ("hnsw", "hnsw-sq8", "ivf", "ivf-sq8", "ivf-pq")
KINDS = EXACT_KINDS + ANN_KINDS

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class IndexSpec:
    kind: str = "hnsw"
    m: int = 32  # HNSW: graph neighbours per node
    ef_construction: int = 80
    ef_search: int = 64
    nlist: int = 0  # IVF: inverted lists; 0 = 4 * sqrt(n), a power of two
    nprobe: int = 16
    pq_m: int = 16  # IVF-PQ: bytes per vector (sub-quantisers of 8 bits)
    refine: int = 0  # re-score refine * k candidates with fp32 vectors (0 = off)
    l2: bool = True  # approximate kinds: search the exact MIPS -> L2 reduction
    train_size: int = 200_000  # IVF / SQ training sample
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; known: {', '.join(KINDS)}")
        if min(self.m, self.ef_construction, self.ef_search, self.nprobe, self.pq_m, self.train_size) < 1:
            raise ValueError("m, ef_construction, ef_search, nprobe, pq_m and train_size must be positive")
        if self.nlist < 0 or self.refine < 0:
            raise ValueError("nlist and refine must be >= 0")

    @property
    def approximate(self) -> bool:
        return self.kind in ANN_KINDS


@contextlib.contextmanager
def faiss_threads(n: int | None) -> Iterator[None]:
    """faiss's OpenMP threads for the block (None: leave as is)."""
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class ItemIndex:
    """Top-k by inner product over `n` item vectors, with any of the kinds above."""

    def __init__(self, index: faiss.Index, spec: IndexSpec, dim: int, max_norm: float) -> None:
        self.index, self.spec, self.dim, self.max_norm = index, spec, dim, max_norm
        self.pad = int(index.d) - dim - (1 if self.reduced else 0)  # zero columns: PQ needs pq_m | width
        self._tune()

    @property
    def reduced(self) -> bool:
        return self.spec.approximate and self.spec.l2

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, spec: IndexSpec | None = None, *, progress: Progress | None = None,
              threads: int | None = None, chunk: int = 50_000) -> ItemIndex:
        """Index `vectors` (n, dim). `progress(done, n)` is called after each chunk added."""
        spec = spec or IndexSpec()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise ValueError(f"need a non-empty (n, dim) array of item vectors, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("item vectors contain NaN or infinite values")
        n, dim = x.shape
        max_norm = 0.0
        if spec.approximate and spec.l2:
            x, max_norm = augment_items(x)
        if spec.kind == "ivf-pq" and x.shape[1] % spec.pq_m:
            x = np.ascontiguousarray(np.pad(x, ((0, 0), (0, -x.shape[1] % spec.pq_m))))
        with faiss_threads(threads):
            index = _make(spec, x.shape[1], n)
            if not index.is_trained:
                rng = np.random.default_rng(spec.seed)
                sample = x if n <= spec.train_size else x[np.sort(rng.choice(n, spec.train_size, replace=False))]
                index.train(sample)
            for a in range(0, n, chunk):
                index.add(x[a:a + chunk])
                if progress is not None:
                    progress(min(a + chunk, n), n)
        return cls(index, spec, dim, max_norm)

    def _tune(self) -> None:
        """Find where the search-time parameters live (set on every search by `_apply`)."""
        base = faiss.downcast_index(self.index.base_index) if isinstance(self.index, faiss.IndexRefine) \
            else self.index
        self._refine = self.index if isinstance(self.index, faiss.IndexRefine) else None
        self._hnsw = faiss.downcast_index(base).hnsw if self.spec.kind.startswith("hnsw") else None
        self._ivf = faiss.extract_index_ivf(base) if self.spec.kind.startswith("ivf") else None
        self._apply()

    def _apply(self) -> None:
        """Put this view's search parameters on the faiss index. Per search, not once: views made by
        `with_search` share one index, and each must search with its own ef / nprobe / refine."""
        if self._refine is not None:
            self._refine.k_factor = float(self.spec.refine)
        if self._hnsw is not None:
            self._hnsw.efSearch = self.spec.ef_search
        elif self._ivf is not None:
            self._ivf.nprobe = self.spec.nprobe

    def with_search(self, *, ef_search: int | None = None, nprobe: int | None = None,
                    refine: int | None = None) -> ItemIndex:
        """The same index searched with other search-time parameters (shares the index; no rebuild)."""
        spec = IndexSpec(**{**asdict(self.spec), **{k: v for k, v in
                                                   {"ef_search": ef_search, "nprobe": nprobe, "refine": refine}.items()
                                                   if v is not None}})
        if (spec.refine > 0) != (self.spec.refine > 0):
            raise ValueError("refine can be changed at search time, not switched on or off")
        return ItemIndex(self.index, spec, self.dim, self.max_norm)

    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) item indices (-1 pads) and inner products (-inf pads), best first."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have {q.shape[1]} dimensions, the index {self.dim}")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        kk = min(k, len(self))
        qs = augment_queries(q) if self.reduced else q
        if self.pad:
            qs = np.ascontiguousarray(np.pad(qs, ((0, 0), (0, self.pad))))
        if threads is None and len(q) == 1:
            threads = 1
        self._apply()
        with faiss_threads(threads):
            dist, idx = self.index.search(qs, kk)
        idx = idx.astype(np.int64)
        if self.reduced:  # |q - x'|^2 = |q|^2 + M^2 - 2 q.x  ->  q.x
            qn = np.einsum("ij,ij->i", q, q)[:, None]
            scores = (0.5 * (qn + self.max_norm**2 - dist)).astype(np.float32)
        else:
            scores = dist.astype(np.float32)
        scores = np.where(idx >= 0, scores, -np.inf).astype(np.float32)
        if kk < k:
            idx = np.hstack([idx, np.full((len(q), k - kk), -1, np.int64)])
            scores = np.hstack([scores, np.full((len(q), k - kk), -np.inf, np.float32)])
        return idx, scores

    # ---- persistence ----------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.faiss"))
        meta = {"format": 1, "spec": asdict(self.spec), "dim": self.dim, "max_norm": self.max_norm}
        (folder / "index.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path) -> ItemIndex:
        folder = Path(folder)
        meta = json.loads((folder / "index.json").read_text())
        return cls(faiss.read_index(str(folder / "index.faiss")), IndexSpec(**meta["spec"]), int(meta["dim"]),
                   float(meta["max_norm"]))

    def file_bytes(self, folder: Path) -> int:
        return (Path(folder) / "index.faiss").stat().st_size


def default_nlist(n: int) -> int:
    """4 * sqrt(n), rounded to a power of two, at most n / 39 (faiss wants >= 39 training points per list)."""
    wanted = round(math.log2(max(1.0, 4 * math.sqrt(n))))
    cap = math.floor(math.log2(max(1.0, n / 39)))
    return 1 << max(0, min(wanted, cap))


def _make(spec: IndexSpec, dim: int, n: int) -> faiss.Index:
    metric = faiss.METRIC_L2 if spec.approximate and spec.l2 else faiss.METRIC_INNER_PRODUCT
    kind = spec.kind
    if kind == "exact":
        return faiss.IndexFlatIP(dim)
    if kind in ("exact-fp16", "exact-int8"):
        qt = faiss.ScalarQuantizer.QT_fp16 if kind == "exact-fp16" else faiss.ScalarQuantizer.QT_8bit
        return faiss.IndexScalarQuantizer(dim, qt, faiss.METRIC_INNER_PRODUCT)
    if kind.startswith("hnsw"):
        base = faiss.IndexHNSWFlat(dim, spec.m, metric) if kind == "hnsw" \
            else faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, spec.m, metric)
        base.hnsw.efConstruction = spec.ef_construction
    else:
        nlist = spec.nlist or default_nlist(n)
        coarse = faiss.IndexFlatL2(dim) if metric == faiss.METRIC_L2 else faiss.IndexFlatIP(dim)
        if kind == "ivf":
            base = faiss.IndexIVFFlat(coarse, dim, nlist, metric)
        elif kind == "ivf-sq8":
            base = faiss.IndexIVFScalarQuantizer(coarse, dim, nlist, faiss.ScalarQuantizer.QT_8bit, metric)
        else:
            base = faiss.IndexIVFPQ(coarse, dim, nlist, spec.pq_m, 8, metric)
        base.cp.seed = spec.seed
    # the faiss wrappers keep `coarse` and `base` referenced by the objects built on them
    return faiss.IndexRefineFlat(base) if spec.refine else base


__all__ = ["ANN_KINDS", "EXACT_KINDS", "KINDS", "IndexSpec", "ItemIndex", "default_nlist", "faiss_threads"]
