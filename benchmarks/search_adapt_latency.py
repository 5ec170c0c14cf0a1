"""Query-encoding cost of a fine-tuned search encoder against the packaged MiniLM, back to back.

    nice -n 10 .venv/bin/python benchmarks/search_adapt_latency.py --encoder /tmp/adapt-hd/encoder

Why CPU time: the fine-tuned encoder has the packaged one's architecture and query length (64 tokens), so its cost
should be the same; on a shared machine wall-clock figures move with the neighbours' load, while the CPU time of
the encoding thread (`time.thread_time`) does not. Each query is encoded by both encoders in turn (alternating
which goes first), on every query path `[inference] query_encoder` offers (torch, onnx, onnx-int8), with the
query caches cold. Prints median and p95 CPU ms per query.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.optimize.textenc import OnnxEmbedder, export_encoder_onnx
from aisle.search.embed import Embedder
from machine import describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", type=Path, required=True, help="a fine-tuned SentenceTransformer folder")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--onnx-dir", type=Path, default=Path("/tmp/aisle-adapt-latency-onnx"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    queries = generate(SyntheticConfig(n_items=2_000, n_users=500, n_events=20_000, seed=0)).events["query"] \
        .drop_nulls().unique(maintain_order=True).to_list()[: args.queries]
    export_encoder_onnx(args.encoder)
    paths = {
        "torch": lambda m: Embedder(None, model_path=m, query_cache_size=0),
        "onnx": lambda m: OnnxEmbedder(None, onnx_dir=args.onnx_dir, model_path=m, query_cache_size=0),
        "onnx-int8": lambda m: OnnxEmbedder(None, int8=True, onnx_dir=args.onnx_dir, model_path=m,
                                            query_cache_size=0),
    }
    print(f"{len(queries)} distinct synthetic queries, CPU ms per query (thread time); {describe()}")
    print("| query encoder | packaged p50 / p95 | fine-tuned p50 / p95 |")
    print("|---|---:|---:|")
    for name, make in paths.items():
        enc = {"packaged": make(None), "fine-tuned": make(args.encoder)}
        for e in enc.values():
            e.embed_query("warm up")  # load (and export) before timing
        ms: dict[str, list[float]] = {k: [] for k in enc}
        for i, q in enumerate(tqdm(queries, desc=name, leave=False)):
            for k in (("packaged", "fine-tuned") if i % 2 == 0 else ("fine-tuned", "packaged")):
                t0 = time.thread_time()
                enc[k].embed_query(q)
                ms[k].append((time.thread_time() - t0) * 1000)
        cells = [f"{np.percentile(ms[k], 50):.2f} / {np.percentile(ms[k], 95):.2f}" for k in enc]
        print(f"| {name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
