"""Mean and spread over seeds of `aisle evaluate --json` results: the table rows of benchmarks/RESULTS.md.

    for s in 0 1 2; do .venv/bin/aisle evaluate s3rec:../shared/data/amazon-s3rec/Beauty.txt --models sasrec \
        --protocol loo --k 10 --seed $s --json /tmp/beauty_sasrec_$s.json; done
    .venv/bin/python benchmarks/deep_summary.py /tmp/beauty_sasrec_*.json

`--users FILE` (one user id per line) adds the same table over those test users only, from the `--per-user`
file written beside each JSON (same name, `.parquet`): ML-1M's gSASRec split has complete test histories only
for its 512 validation users (`val_users.txt`), so only they are comparable with published numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

METRICS = ("HR@10", "NDCG@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--users", type=Path, help="only these test users (one id per line), from the per-user files")
    args = ap.parse_args()
    rows: dict[tuple[str, str], list[dict]] = {}
    subset: dict[tuple[str, str], list[dict]] = {}
    users = [u.strip() for u in args.users.read_text().splitlines() if u.strip()] if args.users else []
    for f in args.files:
        res = json.loads(f.read_text())
        for name, entry in res["models"].items():
            rows.setdefault((res["dataset"], name), []).append({**entry, "seed": res["seed"]})
        if args.users:
            per_user = pl.read_parquet(f.with_suffix(".parquet")).filter(pl.col("user_id").is_in(users))
            for (name,), part in per_user.group_by("model"):
                means = {m: float(part[m].mean()) for m in METRICS}
                subset.setdefault((res["dataset"], str(name)), []).append(
                    {**means, "fit_seconds": res["models"][name]["fit_seconds"], "seed": res["seed"],
                     "n": part.height})
    _print(rows, "test targets, full ranking, leave-one-out (mean ± std over seeds)")
    if args.users:
        n = sorted({e["n"] for entries in subset.values() for e in entries})
        _print(subset, f"the same, over the {'/'.join(map(str, n))} test users of {args.users.name} only")


def _print(rows: dict[tuple[str, str], list[dict]], title: str) -> None:
    table = Table(title=title)
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
