"""The MiniLM query encoder of search: PyTorch (SentenceTransformer) against ONNX Runtime fp32 and int8.

Real queries: a seeded sample of distinct Home Depot search terms. One thread, one query per call (what a search
request does on a query-cache miss), the encoders taking turns on each query; p50/p99 milliseconds, and the
cosine of each ONNX vector to the PyTorch one (min, 1st percentile, mean). The ONNX files are exported from the
packaged weights into `--onnx-dir` on the first run.

    .venv/bin/python benchmarks/optimize_text.py --json /tmp/aisle-opt/text.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from machine import describe
from optimize import print_table
from optimize_setup import interleaved_ms, single_threaded

HOMEDEPOT = "../shared/data/homedepot-search-relevance/train_dev.csv.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries-file", default=HOMEDEPOT)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--onnx-dir", type=Path, default=Path("/tmp/aisle-opt/minilm"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    single_threaded()
    from aisle.optimize.textenc import OnnxEmbedder
    from aisle.search.embed import Embedder

    terms = pl.read_csv(args.queries_file, encoding="utf8-lossy", columns=["search_term"])["search_term"]
    distinct = sorted(set(terms.drop_nulls().to_list()))
    pick = np.random.default_rng(0).choice(len(distinct), size=min(args.n, len(distinct)), replace=False)
    queries = [distinct[i] for i in np.sort(pick)]
    encoders = {"PyTorch fp32 (SentenceTransformer)": Embedder(None, query_cache_size=0),
                "ONNX Runtime fp32": OnnxEmbedder(None, onnx_dir=args.onnx_dir, query_cache_size=0),
                "ONNX Runtime int8": OnnxEmbedder(None, onnx_dir=args.onnx_dir, int8=True, query_cache_size=0)}
    for e in encoders.values():
        e.embed_query("warm up")
    lat = interleaved_ms({n: e.embed_query for n, e in encoders.items()}, queries)
    vecs = {n: np.stack([e.embed_query(q) for q in queries]) for n, e in encoders.items()}
    ref_name = next(iter(encoders))
    rows = []
    for n in encoders:
        cos = (vecs[n] * vecs[ref_name]).sum(axis=1)
        p50, p99 = (float(np.percentile(lat[n], q)) for q in (50, 99))
        rows.append({"variant": n, "p50_ms": p50, "p99_ms": p99,
                     "speedup_p50": float(np.percentile(lat[ref_name], 50)) / p50, "cos_min": float(cos.min()),
                     "cos_p01": float(np.percentile(cos, 1)), "cos_mean": float(cos.mean())})
    machine = describe()
    cols = [("variant", "variant", ""), ("p50_ms", "p50 ms", ".2f"), ("p99_ms", "p99 ms", ".2f"),
            ("speedup_p50", "p50 speed-up", ".1f"), ("cos_min", "cos min", ".4f"), ("cos_p01", "cos p1", ".4f"),
            ("cos_mean", "cos mean", ".4f")]
    print_table(f"MiniLM query encoder, {len(queries)} Home Depot queries - {machine}", rows, cols, Console())
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "queries": len(queries), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
