"""Reports of an experiment: JSON for machines, Markdown + PNG for people, a rich table for the terminal.

Everything here reads the JSON-shaped dict (`Experiment.to_dict()`), never the live objects, so a report
can be rebuilt from a stored JSON file, and the JSON is the single source of every published number:

    {"dataset": ..., "protocol": ..., "n_users": ..., "n_items": ...,
     "models": {"<name>": {"HR@10": ..., "NDCG@10": ..., "fit_seconds": ..., "params": {...}, ...}}, ...}

Under sampled negatives the metric names carry the label (`"HR@10 (sampled-100)"`) and the report
says so in its title, so a sampled figure is never shown as a full-ranking one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

#: Keys of a model's entry that are not metrics.
NOT_METRICS = frozenset({"fit_seconds", "eval_seconds", "tuning_seconds", "params", "n_evaluated",
                         "unreachable_targets", "valid", "trials", "sampled", "n_targets"})
_AT = re.compile(r"^(?P<base>[^@]+)@(?P<k>\d+)(?P<rest>.*)$")


def metric_names(report: Mapping[str, Any]) -> list[str]:
    """Metric keys of the report's models, in first-seen order."""
    names: dict[str, None] = {}
    for entry in report["models"].values():
        for key, value in entry.items():
            if key not in NOT_METRICS and isinstance(value, int | float) and not isinstance(value, bool):
                names.setdefault(key, None)
    return list(names)


def _ranking(report: Mapping[str, Any]) -> str:
    sampled = report.get("sampled")
    return "full ranking over all items" if sampled is None else f"{sampled} sampled negatives per target"


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _best(report: Mapping[str, Any], metric: str) -> float | None:
    values = [e[metric] for e in report["models"].values() if isinstance(e.get(metric), int | float)]
    values = [v for v in values if not math.isnan(v)]
    if len(values) < 2 or metric.startswith("PopBias"):  # lower popularity bias is not "better" per se
        return None
    return max(values)


def write_json(report: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


PER_USER_SUFFIXES = (".parquet", ".csv")


def write_per_user(frame: pl.DataFrame, path: Path) -> None:
    """`Experiment.per_user()` as Parquet or CSV, by the file's suffix (one of PER_USER_SUFFIXES)."""
    if path.suffix not in PER_USER_SUFFIXES:
        raise ValueError(f"expected a {' or '.join(PER_USER_SUFFIXES)} file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)


def _groups(metrics: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for m in metrics:
        hit = _AT.match(m)
        groups.setdefault(f"@{hit['k']}" if hit else "", []).append(m)
    return groups


def markdown(report: Mapping[str, Any], chart: str | None = None) -> str:
    """The Markdown report: context, one models x metrics table per cut-off, timings, chosen parameters."""
    models = report["models"]
    lines = [f"# Evaluation: {report['dataset']}", "",
             f"Protocol **{report['protocol']}**, {_ranking(report)}; {report['n_users']:,} users, "
             f"{report['n_items']:,} items."]
    if "split" in report:
        lines.append("Split: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in report["split"].items()) + ".")
    if "select_metric" in report:
        lines.append(f"Hyper-parameters chosen on the validation targets by {report['select_metric']}, then refitted "
                     f"on train + validation targets and scored once on the test targets (seed {report.get('seed')}).")
    lines.append("")
    for group, names in _groups(metric_names(report)).items():
        lines.append(f"## Metrics {'at ' + group[1:] if group else 'over the full ranking'}")
        lines.append("")
        lines.append("| model | " + " | ".join(names) + " |")
        lines.append("|---|" + "---:|" * len(names))
        for name, entry in models.items():
            cells = []
            for m in names:
                v = entry.get(m)
                cell = _fmt(v) if v is not None else "-"
                cells.append(f"**{cell}**" if v is not None and v == _best(report, m) else cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Timings and parameters", "", "| model | fit seconds | eval seconds | tuning seconds | parameters |",
              "|---|---:|---:|---:|---|"]
    for name, entry in models.items():
        params = json.dumps(entry.get("params", {}), sort_keys=True)
        lines.append(f"| {name} | {_fmt(entry.get('fit_seconds', '-'), 2)} | {_fmt(entry.get('eval_seconds', '-'), 2)} "
                     f"| {_fmt(entry.get('tuning_seconds', '-'), 2)} | `{params}` |")
    note = _unranked_note(report)
    if note is not None:
        lines += ["", note]
    if chart:
        lines += ["", f"![metrics]({chart})"]
    return "\n".join(lines) + "\n"


def write_chart(report: Mapping[str, Any], path: Path) -> None:
    """Grouped bars: HR@K and NDCG@K for every K, then MRR, one bar per model (matplotlib, Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [m for m in metric_names(report) if re.match(r"^(HR|NDCG)@\d+", m) and "graded" not in m]
    names += [m for m in metric_names(report) if m.startswith("MRR") and "@" not in m]
    models = list(report["models"])
    fig = Figure(figsize=(max(6.0, 1.2 * len(names) * max(1, len(models)) / 2), 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        entry = report["models"][model]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [float(entry.get(m, 0.0)) for m in names], width, label=model)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("mean over test users")
    ax.set_title(f"{report['dataset']} — {report['protocol']}, {_ranking(report)}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def write_report(report: Mapping[str, Any], path: Path) -> tuple[Path, Path]:
    """Write the Markdown report to `path` and its bar chart beside it (same name, .png); return both paths."""
    png = path.with_suffix(".png")
    write_chart(report, png)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(report, chart=png.name))
    return path, png


def comparison_table(report: Mapping[str, Any], *, title: str | None = None) -> Table | Group:
    """Terminal table: one column per model, one row per headline metric (HR and NDCG at every K, MRR, AUC,
    the widest coverage) and the fit/evaluation seconds; the best value of each metric in bold. Where some test
    targets could not be ranked, a row counts them per model and a note under the table says why.

    Models are columns so that the table fits a terminal however many cut-offs are asked for. Chosen
    parameters are too wide for it: print `params_summary(report)` beside the table.
    """
    all_names = metric_names(report)
    shown = [m for m in all_names if re.match(r"^(HR|NDCG)@\d+", m) and "graded" not in m]
    shown += [m for m in all_names if ("@" not in m) and (m.startswith(("MRR", "AUC")))]
    coverage = [m for m in all_names if m.startswith("Coverage@")]
    shown += coverage[-1:]
    models = report["models"]
    table = Table(title=title or f"{report['dataset']} · {report['protocol']} · {_ranking(report)}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    table.add_column("metric", no_wrap=True)
    for name in models:  # numbers never shrink: a truncated figure is a wrong figure
        table.add_column(name, justify="right", no_wrap=True, min_width=6)
    for m in shown:
        best = _best(report, m)
        cells = []
        for entry in models.values():
            v = entry.get(m)
            cell = _fmt(v) if v is not None else "-"
            cells.append(f"[bold green]{cell}[/]" if v is not None and v == best else cell)
        table.add_row(m, *cells)
    table.add_section()
    for key, head in (("fit_seconds", "fit seconds"), ("eval_seconds", "eval seconds")):
        table.add_row(head, *(_fmt(e.get(key, "-"), 2) for e in models.values()))
    note = _unranked_note(report)
    if note is None:
        return table
    # a note under the table, not its caption: rich drops a word where a caption's line fills the terminal
    table.add_row("unranked", *(f"{e.get('unreachable_targets') or 0:,}" for e in models.values()))
    return Group(table, Text(note))


def _unranked_note(report: Mapping[str, Any]) -> str | None:
    """How many test targets a model could not rank, why, and what that does to its metrics; None when every
    target could be ranked. Why said at all: else a reader takes a capped HR or an AUC under 0.5 for a broken
    model (the demo's store, where shoppers restock, has more than half its targets in the shoppers' histories)."""
    most = max((e.get("unreachable_targets") or 0 for e in report["models"].values()), default=0)
    if not most:
        return None
    total = next((e["n_targets"] for e in report["models"].values() if e.get("n_targets")), None)
    share = f" of {total:,}" if total else ""
    seen = ""
    if report.get("exclude_seen", True):
        seen = ("an item already in the shopper's history, which the protocol excludes from the ranking "
                "(`aisle evaluate --keep-seen` ranks it: repeat-purchase stores), or ")
    return (f"unranked targets (up to {most:,}{share}): {seen}an item the model gives no score. Each is a miss "
            "for every metric: it caps HR, and AUC scores it 0.")


def candidate_recall_table(report: Mapping[str, Any]) -> Table | None:
    """Terminal table of every pipeline's candidate recall on the test targets (rows: its sources and the merged
    list; columns: the depths, then the mean merged candidates per query); None when no model has one."""
    found = {name: e["candidate_recall"] for name, e in report["models"].items() if e.get("candidate_recall")}
    if not found:
        return None
    depths = next(iter(found.values()))["depths"]
    table = Table(title="Candidate recall on the test targets: share of targets among each source's first d "
                        "candidates and the merged list's (by the combiner)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("model · source", no_wrap=True)
    for d in depths:
        table.add_column(f"@{d}", justify="right", no_wrap=True)
    table.add_column("candidates / query", justify="right")
    for name, rec in found.items():
        for key, values in rec["recall"].items():
            merged = key == "merged"
            table.add_row(f"{name} · {key}", *(_fmt(values[f'@{d}']) for d in depths),
                          _fmt(rec["mean_candidates"], 1) if merged else "", style="bold" if merged else None)
    return table


def paired_tests(per_user: pl.DataFrame, model: str, metrics: list[str]) -> dict[str, dict[str, Any]]:
    """`model` against every other model of `per_user` (`Experiment.per_user()`), user by user: the mean
    difference of each metric and the two-sided p-value of a paired t-test over the users both scored.

    Paired because every model ranks the same users' targets: the per-user differences cancel how hard each
    user is, so a gain far smaller than the spread between users is still detectable (or shown not to be)."""
    from scipy import stats

    mine = per_user.filter(pl.col("model") == model)
    out: dict[str, dict[str, Any]] = {}
    for other in per_user["model"].unique(maintain_order=True).to_list():
        if other == model:
            continue
        theirs = per_user.filter(pl.col("model") == other)
        joined = mine.join(theirs, on="user_id", suffix="__other")
        entry: dict[str, Any] = {"users": joined.height}
        for metric in metrics:
            if metric not in mine.columns or f"{metric}__other" not in joined.columns:
                continue
            a = joined[metric].to_numpy()
            b = joined[f"{metric}__other"].to_numpy()
            diff = a - b
            p = float(stats.ttest_rel(a, b).pvalue) if joined.height > 1 and diff.any() else 1.0
            entry[metric] = {"difference": float(diff.mean()) if len(diff) else 0.0, "p_value": p}
        out[other] = entry
    return out


def paired_table(tests: Mapping[str, Mapping[str, Any]], model: str, metrics: list[str]) -> Table:
    """Terminal table of `paired_tests`: one row per other model, the difference and p-value per metric."""
    table = Table(title=f"{model} against each model, paired per user (t-test, two-sided)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    table.add_column("against", no_wrap=True)
    for metric in metrics:
        table.add_column(f"Δ{metric}", justify="right", no_wrap=True)
        table.add_column("p", justify="right", no_wrap=True)
    for other, entry in tests.items():
        cells = []
        for metric in metrics:
            got = entry.get(metric)
            cells += [f"{got['difference']:+.4f}", f"{got['p_value']:.2g}"] if got else ["-", "-"]
        table.add_row(other, *cells)
    return table


def _param(value: Any) -> str:
    """A parameter as one short token: a pipeline configuration by its source keys (the JSON has all of it)."""
    if isinstance(value, Mapping) and "sources" in value:
        return "sources " + "+".join(str(s.get("key")) for s in value["sources"])
    return str(value)


def params_summary(report: Mapping[str, Any]) -> str:
    """One line per model: the hyper-parameters it was chosen with (and how many were tried)."""
    lines = []
    for name, entry in report["models"].items():
        params = ", ".join(f"{k}={_param(v)}" for k, v in entry.get("params", {}).items()) or "defaults"
        tried = len(entry.get("trials", []))
        lines.append(f"{name}: {params}" + (f" (best of {tried} on validation)" if tried > 1 else ""))
    return "\n".join(lines)


__all__ = [
    "candidate_recall_table",
    "comparison_table",
    "markdown",
    "metric_names",
    "paired_table",
    "paired_tests",
    "params_summary",
    "write_chart",
    "write_json",
    "write_report",
]
