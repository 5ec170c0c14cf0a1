"""Deployment performance: latency, throughput, memory, size and NDCG@10 of every inference variant.

Two tables. Amazon Beauty: the default SASRec (the teacher, fitted on train + validation targets as `aisle
evaluate` fits it) served as fp32 PyTorch (`model.score`, the reference), PyTorch dynamic int8, ONNX Runtime
fp32 / int8, with exact, int8-table and HNSW scoring, a distilled student and magnitude-pruned copies.
A synthetic 1,000,000-item catalog (benchmarks/optimize_million.py): exact search against faiss ANN indexes,
and the encoder variants end to end.

Single request = one test user's history -> top-10 items (history excluded), one thread, the variants taking
turns on each query (interleaved, so load changes hit them alike); p50/p99 over `--queries` users. Batch =
256 histories per call, one thread. Memory = resident-memory growth of a fresh process while it loads the
variant and answers 50 queries. Size = the files a deployment ships (weights / ONNX file + item index; pruned:
the weights stored sparse). NDCG@10 = the official harness (full ranking over all items, leave-one-out TEST
targets, history excluded) over every test user; `agree@10` = share of the reference's top-10 kept.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/optimize_setup.py --cache /tmp/aisle-opt --student  # once
    .venv/bin/python benchmarks/optimize.py --cache /tmp/aisle-opt --json /tmp/aisle-opt/beauty.json
    .venv/bin/python benchmarks/optimize.py --cache /tmp/aisle-opt --million --json /tmp/aisle-opt/million.json
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from aisle.index import IndexSpec, ItemIndex, Retriever
from aisle.models.base import QueryBatch, recommend
from aisle.models.sequential import SASRec
from aisle.optimize.encoders import OnnxEncoder, make_encoder
from aisle.optimize.parity import ndcg10
from aisle.optimize.prune import magnitude_prune, sparse_bytes
from machine import describe
from optimize_setup import (
    BEAUTY,
    Setup,
    interleaved_ms,
    load_setup,
    load_student,
    per_second,
    rss_mib,
    sample_queries,
    single_threaded,
)

HNSW = IndexSpec(kind="hnsw", m=32, ef_construction=80, ef_search=64)
#: row name -> (model, backend, item scoring); backend "score" = the model's own `score` (PyTorch fp32)
SPECS: dict[str, tuple[str, str, str]] = {
    "fp32 PyTorch (model.score)": ("teacher", "score", "-"),
    "fp32 PyTorch encoder, exact": ("teacher", "torch", "exact"),
    "int8 PyTorch, exact": ("teacher", "torch-int8", "exact"),
    "ONNX, exact": ("teacher", "onnx", "exact"),
    "ONNX int8, exact": ("teacher", "onnx-int8", "exact"),
    "ONNX int8, int8 table": ("teacher", "onnx-int8", "exact-int8"),
    "ONNX, HNSW": ("teacher", "onnx", "hnsw"),
    "ONNX int8, HNSW": ("teacher", "onnx-int8", "hnsw"),
    "student, PyTorch": ("student", "score", "-"),
    "student, ONNX int8": ("student", "onnx-int8", "exact"),
    "pruned 30%, PyTorch": ("pruned 0.3", "score", "-"),
    "pruned 50%, PyTorch": ("pruned 0.5", "score", "-"),
    "pruned 70%, PyTorch": ("pruned 0.7", "score", "-"),
}
VARIANTS = tuple(SPECS)


@dataclass
class Variant:
    name: str
    model: Any  # what the harness scores (a Recommender)
    single: Callable[[np.ndarray], Any]
    batch: Callable[[list[np.ndarray]], Any]
    size_bytes: int


def _model_score(model: SASRec) -> tuple[Callable[[np.ndarray], Any], Callable[[list[np.ndarray]], Any]]:
    def single(h: np.ndarray) -> Any:
        return recommend(model.score(QueryBatch.of_histories([h])), 10, exclude=[h])[0]

    def batch(hs: list[np.ndarray]) -> Any:
        return recommend(model.score(QueryBatch.of_histories(hs)), 10, exclude=hs)[0]

    return single, batch


def _retriever(r: Retriever) -> tuple[Callable[[np.ndarray], Any], Callable[[list[np.ndarray]], Any]]:
    return (lambda h: r.top_n(QueryBatch.of_histories([h]), 10)[0],
            lambda hs: r.top_n(QueryBatch.of_histories(hs), 10)[0])


def _file(path: Path) -> int:
    return Path(path).stat().st_size


def _index_bytes(index: ItemIndex) -> int:
    return int(faiss.serialize_index(index.index).size)


def _state_bytes(module: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.tell()


def build_variant(name: str, setup: Setup, student: SASRec | None, cache: Path) -> Variant:
    """One row's inference object, built from the cached teacher / student (also used by the memory probe)."""
    which, backend, kind = SPECS[name]
    if which == "student":
        if student is None:
            raise ValueError("no distilled student in the cache (run optimize_setup.py --student)")
        model, weights = student, _file(cache / "student" / "weights.safetensors")
    elif which.startswith("pruned"):
        model = magnitude_prune(setup.teacher, float(which.split()[1]))
        weights = sparse_bytes(model)
    else:
        model, weights = setup.teacher, _file(cache / "teacher" / "weights.safetensors")
    if backend == "score":
        return Variant(name, model, *_model_score(model), weights)
    enc = make_encoder(model, backend, folder=cache / "onnx", threads=1)
    size = _file(enc.path) if isinstance(enc, OnnxEncoder) else _state_bytes(enc.module)
    spec = HNSW if kind == "hnsw" else IndexSpec(kind=kind)
    index = ItemIndex.build(enc.item_vectors(), spec, threads=1)
    r = Retriever(enc, index, depth=100)
    return Variant(name, r, *_retriever(r), size + _index_bytes(index))


def memory_probe(name: str, cache: Path, data: str) -> float:
    """RSS growth (MiB) of this process while it loads and builds `name` and answers 50 queries."""
    import gc

    single_threaded()
    setup = load_setup(data, cache, console=False, teacher=False)
    hists = sample_queries(setup, 50, seed=1)
    gc.collect()
    before = rss_mib()
    which = SPECS[name][0]
    setup.teacher = SASRec.load(cache / "teacher") if which != "student" else None  # type: ignore[assignment]
    student = SASRec.load(cache / "student") if which == "student" else None
    v = build_variant(name, setup, student, cache)
    if SPECS[name][1] != "score":  # an encoder + index serve without the PyTorch model
        setup.teacher, student = None, None  # type: ignore[assignment]
        gc.collect()
    for h in hists:
        v.single(h)
    return rss_mib() - before


def beauty_rows(args: argparse.Namespace, console: Console) -> list[dict[str, Any]]:
    setup = load_setup(args.data, args.cache)
    student = load_student(setup, args.cache) if (args.cache / "student" / "model.json").exists() else None
    names = [n for n in VARIANTS if student is not None or not n.startswith("student")]
    if args.only:
        names = [n for n in names if any(o in n for o in args.only)]
    single_threaded()
    variants = {n: build_variant(n, setup, student, args.cache) for n in names}
    hists = sample_queries(setup, args.queries)
    lat = interleaved_ms({n: v.single for n, v in variants.items()}, hists)
    ref_name = VARIANTS[0]
    ref_top = [variants[ref_name].single(h) for h in hists] if ref_name in variants else None
    batches = [hists[a:a + 256] for a in range(0, min(len(hists), 1024), 256)]
    rows = []
    ref_ndcg = None
    for n, v in variants.items():
        console.print(f"[dim]{n}: throughput, memory, NDCG@10 ...[/]")
        qps = per_second(v.batch, batches, 256)
        mem = _probe(n, args)
        ndcg, secs = ndcg10(v.model, setup.train, setup.split) if not args.no_ndcg else (float("nan"), 0.0)
        if n == ref_name:
            ref_ndcg = ndcg
        agree = float(np.mean([len(np.intersect1d(np.ravel(v.single(h)), np.ravel(t))) / 10
                               for h, t in zip(hists, ref_top, strict=True)])) if ref_top is not None else float("nan")
        rows.append({"variant": n, "p50_ms": float(np.percentile(lat[n], 50)),
                     "p99_ms": float(np.percentile(lat[n], 99)), "batch_users_per_s": qps, "memory_mib": mem,
                     "size_mib": v.size_bytes / 2**20, "ndcg10": ndcg, "agree10": agree, "eval_s": secs})
    base = rows[0] if rows and rows[0]["variant"] == ref_name else None
    for r in rows:
        r["speedup_p99"] = base["p99_ms"] / r["p99_ms"] if base else float("nan")
        r["ndcg_rel"] = (r["ndcg10"] - ref_ndcg) / ref_ndcg if ref_ndcg else float("nan")
    return rows


def _probe(name: str, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--memory-of", name, "--cache", str(args.cache), "--data", args.data]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["rss_mib"])
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        print(f"memory probe of {name} failed: {exc}", file=sys.stderr)
        return float("nan")


def print_table(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], console: Console
                ) -> None:
    table = Table(title=title)
    for _, head, _ in columns:
        table.add_column(head, justify="left" if head in ("variant", "index") else "right")
    for r in rows:
        table.add_row(*[format(r[k], fmt) if isinstance(r[k], float | int) and fmt else str(r[k])
                        for k, _, fmt in columns])
    console.print(table)


BEAUTY_COLUMNS = [("variant", "variant", ""), ("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"),
                  ("speedup_p99", "p99 speed-up", ".1f"), ("batch_users_per_s", "batch users/s", ",.0f"),
                  ("memory_mib", "memory MiB", ".1f"), ("size_mib", "size MiB", ".2f"), ("ndcg10", "NDCG@10", ".4f"),
                  ("ndcg_rel", "ΔNDCG rel", "+.1%"), ("agree10", "agree@10", ".3f")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=BEAUTY)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/aisle-opt"))
    ap.add_argument("--queries", type=int, default=1000, help="single-request latency sample (test users)")
    ap.add_argument("--only", nargs="*", help="variants whose name contains one of these")
    ap.add_argument("--no-ndcg", action="store_true", help="skip the harness (latency only)")
    ap.add_argument("--million", action="store_true", help="the 1,000,000-item table instead of Beauty's")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.memory_of:
        print(json.dumps({"rss_mib": memory_probe(args.memory_of, args.cache, args.data)}))
        return
    console = Console()
    machine = describe()
    if args.million:
        from optimize_million import million_main

        million_main(args, rest, console, machine)
        return
    rows = beauty_rows(args, console)
    print_table(f"Amazon Beauty, 12,101 items, SASRec - {machine} (at the end)", rows, BEAUTY_COLUMNS, console)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
