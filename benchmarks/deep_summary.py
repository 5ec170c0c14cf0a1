"""Mean and spread over seeds of `aisle evaluate --json` results: the table rows of benchmarks/RESULTS.md.

    for s in 0 1 2; do .venv/bin/aisle evaluate s3rec:../shared/data/amazon-s3rec/Beauty.txt --models sasrec \
        --protocol loo --k 10 --seed $s --json /tmp/beauty_sasrec_$s.json; done
    .venv/bin/python benchmarks/deep_summary.py /tmp/beauty_sasrec_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

METRICS = ("HR@10", "NDCG@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    rows: dict[tuple[str, str], list[dict]] = {}
    for f in args.files:
        res = json.loads(f.read_text())
        for name, entry in res["models"].items():
            rows.setdefault((res["dataset"], name), []).append({**entry, "seed": res["seed"]})
    table = Table(title="test targets, full ranking, leave-one-out (mean ± std over seeds)")
    for col in ("dataset", "model", "seeds", *METRICS, "fit s (mean)", "per seed NDCG@10"):
        table.add_column(col, justify="left" if col in ("dataset", "model") else "right")
    for (dataset, name), entries in sorted(rows.items()):
        cells = []
        for m in METRICS:
            v = np.array([e[m] for e in entries])
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
        fit = np.mean([e["fit_seconds"] for e in entries])
        per_seed = ", ".join(f"{e['seed']}: {e['NDCG@10']:.4f}" for e in sorted(entries, key=lambda e: e["seed"]))
        table.add_row(dataset, name, str(len(entries)), *cells, f"{fit:.0f}", per_seed)
    Console().print(table)


if __name__ == "__main__":
    main()
