"""Classic recommenders on the four public benchmarks, by the official path: `aisle evaluate`.

For each dataset this runs exactly the command a user would type (leave-one-out, full ranking over all items,
hyper-parameters chosen on the validation targets only, refit on train + validation, scored once on the test
targets) and writes its JSON and Markdown report; then it prints one table over all of them, ready for
RESULTS.md. `--render` only re-reads the JSON files of an earlier run.

    .venv/bin/python benchmarks/classic.py                              # all four datasets, every classic model
    .venv/bin/python benchmarks/classic.py --datasets beauty --models pop,ease,markov
    .venv/bin/python benchmarks/classic.py --render                     # table from benchmarks/out/classic/*.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
AISLE = Path(sys.executable).with_name("aisle")
CLASSIC = "pop,trending,itemknn,userknn,ease,als,bpr,markov,fbt,content"
DATASETS = {
    "beauty": f"s3rec:{DATA / 'amazon-s3rec' / 'Beauty.txt'}",
    "sports": f"s3rec:{DATA / 'amazon-s3rec' / 'Sports_and_Outdoors.txt'}",
    "ml1m": f"ml1m-sasrec:{DATA / 'movielens-1m' / 'sasrec_split'}",
    "ml100k": f"movielens:{DATA / 'movielens-100k'}",
}


def command(dataset: str, models: str, out: Path) -> list[str]:
    return [str(AISLE), "evaluate", DATASETS[dataset], "--models", models, "--protocol", "loo", "--k", "10,20",
            "--json", str(out / f"{dataset}.json"), "--report", str(out / f"{dataset}.md")]


def render(results: dict[str, dict]) -> str:
    """One Markdown table: a row per (dataset, model), the best NDCG@10 of each dataset in bold."""
    lines = ["| dataset | users x items | model | HR@10 | NDCG@10 | HR@20 | NDCG@20 | MRR | fit s | tuning s | chosen "
             "on validation |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, res in results.items():
        best = max(m["NDCG@10"] for m in res["models"].values())
        for model, m in res["models"].items():
            nd = f"{m['NDCG@10']:.4f}"
            params = ", ".join(f"{k}={v}" for k, v in m["params"].items()) or "-"
            lines.append(f"| {name} | {res['n_users']:,} x {res['n_items']:,} | {model} | {m['HR@10']:.4f} | "
                         f"{f'**{nd}**' if m['NDCG@10'] == best else nd} | {m['HR@20']:.4f} | {m['NDCG@20']:.4f} | "
                         f"{m['MRR']:.4f} | {m['fit_seconds']:.1f} | {m['tuning_seconds']:.0f} | {params} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    ap.add_argument("--models", default=CLASSIC)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "classic")
    ap.add_argument("--render", action="store_true", help="only print the table of an earlier run's JSON files")
    args = ap.parse_args()
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [] if args.render else names:
        cmd = command(name, args.models, args.out)
        print("$", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"{name}: {time.perf_counter() - t0:.0f} s end to end ({machine.describe()})", flush=True)
    results = {n: json.loads((args.out / f"{n}.json").read_text()) for n in names if (args.out / f"{n}.json").exists()}
    print(render(results))


if __name__ == "__main__":
    main()
