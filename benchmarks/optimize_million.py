"""The 1,000,000-item table of benchmarks/optimize.py: exact search against faiss indexes, and the encoders.

The catalog: Beauty's 12,101 real items (the model's own item vectors, so the real test targets and
histories keep their meaning) plus 987,899 synthetic ones, each a variant of a randomly chosen real item
(a "product family"): parent + `spread` * N(0, covariance of the real item vectors). Queries are real: the
encoded histories of Beauty test users. Every model (teacher, student, pruned) gets its catalog from the
same parents and noise seeds in its own vector space.

Part A (indexes): the teacher's fp32 query vectors, single query top-10 (history excluded) per index, one
thread; recall@10 against exact search over the same 1M vectors. Part B (end to end): history -> encoder
-> index -> top-10, each model against its own exact search. NDCG@10 on the Beauty test targets ranked among
all 1M items (the harness, full ranking) over a seeded sample of `--ndcg-users` test users, for the rows
marked in the code (each costs minutes).

    .venv/bin/python benchmarks/optimize.py --cache /tmp/aisle-opt --million --json /tmp/aisle-opt/million.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from rich.console import Console

from aisle.config import InferenceConfig
from aisle.evaluate.protocol import evaluate
from aisle.index import IndexSpec, ItemIndex, Retriever, exact_top_k, faiss_threads, recall_at_k
from aisle.models.base import QueryBatch, TrainData, Vocab
from aisle.optimize.encoders import make_encoder
from aisle.optimize.prune import magnitude_prune
from aisle.optimize.serving import cached_index, index_specs
from optimize_setup import Setup, interleaved_ms, load_setup, load_student, per_second, sample_queries, single_threaded

N_ITEMS = 1_000_000


def synthetic_catalog(items: np.ndarray, n: int, *, spread: float = 0.5, seed: int = 0) -> np.ndarray:
    """(n, dim): the real `items` first, then families around randomly chosen real items (see the docstring)."""
    real = np.asarray(items, np.float32)
    rng = np.random.default_rng(seed)
    parents = rng.integers(0, len(real), n - len(real))
    chol = np.linalg.cholesky(np.cov(real.T.astype(np.float64)) + 1e-8 * np.eye(real.shape[1])).astype(np.float32)
    out = np.empty((n, real.shape[1]), np.float32)
    out[: len(real)] = real
    for a in range(0, len(parents), 100_000):
        p = parents[a:a + 100_000]
        noise = rng.standard_normal((len(p), real.shape[1]), dtype=np.float32) @ chol.T
        out[len(real) + a:len(real) + a + len(p)] = real[p] + spread * noise
    return out


class CatalogModel:
    """A vector model: an encoder's user vectors against another item table (the 1M catalog)."""

    def __init__(self, encoder: Any, catalog: np.ndarray) -> None:
        self.encoder, self.catalog = encoder, catalog
        self.backend = getattr(encoder, "backend", "torch")

    def user_vectors(self, batch: QueryBatch) -> np.ndarray:
        return self.encoder.user_vectors(batch)

    def item_vectors(self) -> np.ndarray:
        return self.catalog


class TorchExact:
    """fp32 PyTorch exact scoring over the 1M table: one matrix product and torch.topk (the reference)."""

    def __init__(self, model: CatalogModel) -> None:
        self.model = model
        self.table = torch.from_numpy(model.catalog)

    def top10(self, h: np.ndarray) -> np.ndarray:
        q = torch.from_numpy(self.model.user_vectors(QueryBatch.of_histories([h])))
        return _filter(torch.topk(q @ self.table.T, 10 + len(h)).indices.numpy()[0], h)

    def score(self, batch: QueryBatch) -> np.ndarray:
        return (torch.from_numpy(self.model.user_vectors(batch)) @ self.table.T).numpy()


def _filter(idx: np.ndarray, h: np.ndarray) -> np.ndarray:
    keep = idx[(idx >= 0) & ~np.isin(idx, h)][:10]
    return np.pad(keep, (0, 10 - len(keep)), constant_values=-1)


def _ndcg(model: Any, setup: Setup, users: int, seed: int = 0) -> float:
    """Test NDCG@10 over a seeded sample of test users, every one of the 1M items ranked (nan when `users` is 0:
    among a million synthetic siblings of the real items the real targets rank near nothing, so at this size
    recall@10 against exact search is the accuracy that says something)."""
    if users <= 0:
        return float("nan")
    test = setup.split.test
    keep = test.sample(n=min(users, test.height), seed=seed)["user_id"]
    split = dataclasses.replace(setup.split, test=test.filter(pl.col("user_id").is_in(keep.implode())))
    ids = list(setup.train.items.ids) + [f"synthetic-{i}" for i in range(N_ITEMS - setup.train.n_items)]
    train = TrainData(users=setup.train.users, items=Vocab.of(ids), events=setup.train.events)
    return float(evaluate(model, train, split, "test", ks=(10,)).metrics["NDCG@10"])


def _index(catalog: np.ndarray, spec: IndexSpec, folder: Path, console: Console) -> tuple[ItemIndex, float]:
    t0 = time.perf_counter()
    with faiss_threads(2):  # building is batch work: both cores
        index = cached_index(catalog, spec, folder)
    secs = time.perf_counter() - t0
    console.print(f"[dim]{spec.kind} ready in {secs:.0f} s (0 = from the cache)[/]")
    return index, secs


def million_main(args: argparse.Namespace, rest: list[str], console: Console, machine: str) -> None:
    global N_ITEMS  # --items: a smaller catalog for a quick check of the script
    ap = argparse.ArgumentParser()
    ap.add_argument("--ndcg-users", type=int, default=0, help="0: no NDCG (see _ndcg)")
    ap.add_argument("--ef", type=int, nargs="*", default=[32, 64, 128, 256])
    ap.add_argument("--nprobe", type=int, nargs="*", default=[8, 16, 32, 64])
    ap.add_argument("--items", type=int, default=N_ITEMS)
    extra = ap.parse_args(rest)
    N_ITEMS = extra.items
    single_threaded()
    folder = args.cache / "million"
    setup = load_setup(args.data, args.cache)
    student = load_student(setup, args.cache) if (args.cache / "student" / "model.json").exists() else None
    hists = sample_queries(setup, min(args.queries, 1000))
    teacher_cat = synthetic_catalog(setup.teacher.item_vectors(), N_ITEMS)
    enc = make_encoder(setup.teacher, "torch")
    qv = enc.user_vectors(QueryBatch.of_histories(hists))
    truth = exact_top_k(teacher_cat, qv, 10, chunk=16, exclude=hists)
    rows: list[dict[str, Any]] = []

    # ---- Part A: indexes, teacher fp32 query vectors ----
    fp32 = CatalogModel(enc, teacher_cat)
    candidates: dict[str, tuple[Any, float, int, bool]] = {}  # name -> (index or TorchExact, build s, bytes, ndcg?)
    candidates["exact, PyTorch fp32 (matmul + topk)"] = (TorchExact(fp32), 0.0, teacher_cat.nbytes, True)
    for kind in ("exact", "exact-int8"):
        ix, s = _index(teacher_cat, IndexSpec(kind=kind), folder, console)
        candidates[f"{kind}, faiss"] = (ix, s, _bytes(ix, folder), False)
    hnsw, s = _index(teacher_cat, IndexSpec(kind="hnsw", m=32, ef_construction=80), folder, console)
    for ef in extra.ef:
        candidates[f"HNSW M=32, ef={ef}"] = (hnsw.with_search(ef_search=ef), s, _bytes(hnsw, folder), ef == 64)
    ivf, s = _index(teacher_cat, IndexSpec(kind="ivf"), folder, console)
    for p in extra.nprobe:
        candidates[f"IVF-flat {ivf.index.nlist}, nprobe={p}"] = (ivf.with_search(nprobe=p), s, _bytes(ivf, folder),
                                                                 False)
    pq, s = _index(teacher_cat, IndexSpec(kind="ivf-pq", pq_m=16, refine=10), folder, console)
    candidates["IVF-PQ 16 B + fp32 refine x10, nprobe=32"] = (pq.with_search(nprobe=32), s, _bytes(pq, folder), False)
    fns = {n: ((lambda i, c=c: c.top10(hists[i])) if isinstance(c, TorchExact) else _searcher(c, qv, hists))
           for n, (c, *_) in candidates.items()}
    inputs = list(range(len(hists)))
    lat = interleaved_ms({n: (lambda i, f=f: f(i)) for n, f in fns.items()}, inputs)
    for name, (c, build_s, nbytes, want_ndcg) in candidates.items():
        got = np.stack([fns[name](i) for i in inputs])
        model = c if isinstance(c, TorchExact) else Retriever(fp32, c, depth=100)
        qps = per_second(lambda b, m=model: _batch_top(m, b), [hists[a:a + 256] for a in range(0, 512, 256)], 256)
        rows.append({"part": "A", "variant": name, "p50_ms": _pct(lat[name], 50), "p99_ms": _pct(lat[name], 99),
                     "batch_qps": qps, "index_mib": nbytes / 2**20, "build_s": build_s,
                     "recall10": recall_at_k(got, truth, 10),
                     "ndcg10": _ndcg(model, setup, extra.ndcg_users) if want_ndcg else float("nan")})
        console.print(rows[-1])

    # ---- Part B: end to end, history -> encoder -> the ANN index serving uses ([inference] defaults) ----
    _, served = index_specs(InferenceConfig())
    label = f"{served.kind} (nprobe={served.nprobe})" if served.kind.startswith("ivf") else \
        f"{served.kind} (ef={served.ef_search})"
    ann, _ = _index(teacher_cat, served, folder, console)
    e2e: dict[str, tuple[Any, np.ndarray]] = {}
    e2e["fp32 PyTorch, exact"] = (TorchExact(fp32), truth)
    for backend in ("torch", "torch-int8", "onnx", "onnx-int8"):
        e = make_encoder(setup.teacher, backend, folder=args.cache / "onnx", threads=1)
        e2e[f"{backend}, {label}"] = (Retriever(CatalogModel(e, teacher_cat), ann, depth=100), truth)
    for name, model in (("student", student), ("pruned 50%", magnitude_prune(setup.teacher, 0.5))):
        if model is None:
            continue
        cat = synthetic_catalog(model.item_vectors(), N_ITEMS)
        e = make_encoder(model, "onnx-int8", folder=args.cache / "onnx", threads=1)
        cm = CatalogModel(e, cat)
        own = exact_top_k(cat, make_encoder(model, "torch").user_vectors(QueryBatch.of_histories(hists)), 10,
                          chunk=16, exclude=hists)
        ix, _ = _index(cat, served, folder, console)
        e2e[f"{name}, onnx-int8, {label}"] = (Retriever(cm, ix, depth=100), own)
        del cat
    fns = {n: (m.top10 if isinstance(m, TorchExact)
               else (lambda h, m=m: m.top_n(QueryBatch.of_histories([h]), 10)[0][0]))
           for n, (m, _) in e2e.items()}
    lat = interleaved_ms(fns, hists)
    for name, (m, ref) in e2e.items():
        got = np.stack([fns[name](h) for h in hists])
        qps = per_second(lambda b, m=m: _batch_top(m, b), [hists[a:a + 256] for a in range(0, 512, 256)], 256)
        rows.append({"part": "B", "variant": name, "p50_ms": _pct(lat[name], 50), "p99_ms": _pct(lat[name], 99),
                     "batch_qps": qps, "index_mib": float("nan"), "build_s": float("nan"),
                     "recall10": recall_at_k(got, ref, 10), "ndcg10": _ndcg(m, setup, extra.ndcg_users)})
        console.print(rows[-1])
    from optimize import print_table

    cols = [("variant", "index", ""), ("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"),
            ("batch_qps", "batch q/s", ",.0f"), ("index_mib", "index MiB", ".0f"), ("build_s", "build s", ".0f"),
            ("recall10", "recall@10", ".3f"), ("ndcg10", "NDCG@10", ".4f")]
    print_table(f"{N_ITEMS:,} items, top-10 retrieval (teacher query vectors) - {machine}",
                [r for r in rows if r["part"] == "A"], cols, console)
    print_table(f"{N_ITEMS:,} items, end to end (history -> top-10) - {machine}",
                [r for r in rows if r["part"] == "B"], cols, console)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "n_items": N_ITEMS, "rows": rows}, indent=2))


def _searcher(index: ItemIndex, qv: np.ndarray, hists: list[np.ndarray]) -> Any:
    def top10(i: int) -> np.ndarray:
        h = hists[i]
        return _filter(index.search(qv[i][None], 10 + len(h), threads=1)[0][0], h)

    return top10


def _batch_top(model: Any, hs: list[np.ndarray]) -> Any:
    if isinstance(model, TorchExact):
        return [model.top10(h) for h in hs]
    return model.top_n(QueryBatch.of_histories(hs), 10)


def _bytes(index: ItemIndex, folder: Path) -> int:
    exact_kind = re.compile(rf"index-{re.escape(index.spec.kind)}-[0-9a-f]{{16}}")  # "ivf" is not "ivf-pq"
    found = sorted((p for p in folder.iterdir() if exact_kind.fullmatch(p.name)), key=lambda p: p.stat().st_mtime)
    return index.file_bytes(found[-1]) if found else 0


def _pct(ms: np.ndarray, q: int) -> float:
    return float(np.percentile(ms, q))


__all__ = ["CatalogModel", "synthetic_catalog"]
