"""`aisle evaluate`: compare recommenders on a data source by the published offline protocol.

One command from raw file to a publishable comparison: read and validate the source, split it
(leave-one-out or temporal), tune every model on the validation targets, refit, score once on the test
targets with full ranking, and print a table; `--json` and `--report` keep the numbers and a
Markdown + PNG report. Heavy imports (the models, torch) happen inside the command so `aisle --help`
stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from aisle.cli.console import error_line
from aisle.data.readers import READERS

console = Console()
err = Console(stderr=True)


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=option) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"expected positive integers, got {text!r}", param_hint=option)
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def evaluate(
    dataspec: Annotated[str, typer.Argument(help="FORMAT:PATH[?key=value&...]; formats: " + ", ".join(READERS))],
    models: Annotated[str, typer.Option(help="Comma-separated model names (see the error for the list); "
                                        "`pipeline` is the serving pipeline, its sources set by a \\[pipeline] "
                                        "table of --config (default: the demo's fast sources).")]
    = "pop,itemknn",
    protocol: Annotated[str, typer.Option(help="loo: last target per user is the test target, the one before "
                                          "it validation; temporal: a global cut in time.")] = "loo",
    k: Annotated[str, typer.Option("--k", help="Comma-separated cut-offs K for the @K metrics.")] = "10,20",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file "
                                                  "('-' for stdout).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write a Markdown report here and its PNG chart beside "
                                                "it.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for model fits and negative sampling.")] = 0,
    sampled: Annotated[int | None, typer.Option(help="Rank each target among N uniformly sampled negatives "
                                                "instead of all items (labelled in every metric). Not "
                                                "comparable with full-ranking numbers.")] = None,
    target_types: Annotated[str | None, typer.Option("--target-types", help="Comma-separated event types "
                                                     "that count as targets, e.g. purchase (default: all).")] = None,
    max_trials: Annotated[int, typer.Option(help="At most this many hyper-parameter settings per model, "
                                            "tried on the validation targets.")] = 8,
    config: Annotated[Path | None, typer.Option(help="TOML/JSON file of per-model parameters "
                                                "(`\\[sasrec] max_len = 200`): they are fixed, not searched; a "
                                                "\\[pipeline] table sets the pipeline as `aisle train` reads it.")]
    = None,
    per_user: Annotated[Path | None, typer.Option("--per-user", help="Write each test user's metrics, one row "
                                                  "per model and user, to this .parquet or .csv file (for "
                                                  "user subsets and paired tests).")] = None,
    keep_seen: Annotated[bool, typer.Option("--keep-seen", help="Rank the items a shopper already had too (by "
                                            "default they are excluded, and a target among them counts as a "
                                            "miss): for stores where shoppers buy the same items again.")]
    = False,
) -> None:
    """Tune on validation, refit, and score models on the test targets (full ranking); print a comparison."""
    from aisle.data.readers import DataSpec, read_dataspec
    from aisle.data.validation import DataError
    from aisle.evaluate.protocol import label
    from aisle.evaluate.report import (
        PER_USER_SUFFIXES,
        candidate_recall_table,
        comparison_table,
        paired_table,
        paired_tests,
        params_summary,
        write_json,
        write_per_user,
        write_report,
    )
    from aisle.evaluate.runner import PROTOCOLS, ModelError, run_experiment

    ks = _ints(k, "--k")
    if per_user is not None and per_user.suffix not in PER_USER_SUFFIXES:
        raise typer.BadParameter(f"expected a {' or '.join(PER_USER_SUFFIXES)} file, got {per_user}",
                                 param_hint="--per-user")
    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"must be one of {', '.join(PROTOCOLS)}", param_hint="--protocol")
    if sampled is not None and sampled < 1:
        raise typer.BadParameter("must be a positive number of negatives", param_hint="--sampled")
    if max_trials < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-trials")
    names = _names(models)
    if not names:
        raise typer.BadParameter("name at least one model", param_hint="--models")
    try:
        from aisle.models.registry import MODELS
    except ImportError as exc:
        err.print(error_line(f"no model registry available (aisle.models.registry): {exc}"))
        raise typer.Exit(2) from None
    unknown = [n for n in names if n not in MODELS and n != PIPELINE]
    if unknown:
        err.print(error_line(f"unknown model{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                  f"known: {', '.join(sorted([*MODELS, PIPELINE]))}"))
        raise typer.Exit(2)
    params = _config(config, names)
    classes = {n: _pipeline_model(params, config) if n == PIPELINE else _pinned(MODELS[n], params.get(n))
               for n in names}
    try:
        spec = DataSpec.parse(dataspec)
        with err.status(f"Reading and validating {spec} ..."):
            data = read_dataspec(spec)
    except DataError as exc:
        err.print(error_line(exc))
        raise typer.Exit(1) from None
    except (ValueError, FileNotFoundError, OSError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    if data.events.is_empty():
        err.print(error_line(f"{spec} holds no events to evaluate on"))
        raise typer.Exit(2)
    try:
        exp = run_experiment(data, classes, protocol=protocol, ks=ks, max_trials=max_trials,
                             seed=seed, sampled=sampled, target_types=_names(target_types) if target_types else None,
                             exclude_seen=not keep_seen, console=err, name=spec.path.stem)
    except ModelError as exc:
        err.print(error_line(exc))
        raise typer.Exit(1) from None
    except ValueError as exc:  # e.g. a temporal split of an event log without time
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    result = exp.to_dict()
    to_stdout = json_out is not None and str(json_out) == "-"
    out = err if to_stdout else console
    out.print(comparison_table(result))
    out.print(params_summary(result), markup=False, highlight=False)
    recall = candidate_recall_table(result)
    if recall is not None:
        out.print(recall)
    if PIPELINE in exp.models and len(exp.models) > 1:
        headline = [label(f"{m}@{ks[0]}", sampled) for m in ("NDCG", "HR")]
        tests = paired_tests(exp.per_user(), PIPELINE, headline)
        result["paired"] = {"model": PIPELINE, "test": "paired t-test, two-sided", "against": tests}
        out.print(paired_table(tests, PIPELINE, headline))
    if sampled is not None:
        (err if to_stdout else console).print(f"[yellow]Sampled metrics ({sampled} negatives per target): not "
                                              "comparable with full-ranking numbers.[/]")
    if to_stdout:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    elif json_out is not None:
        write_json(result, json_out)
        console.print(f"Wrote {json_out}")
    if per_user is not None:
        frame = exp.per_user()
        write_per_user(frame, per_user)
        (err if to_stdout else console).print(f"Wrote {per_user} ({frame.height:,} rows)")
    if report is not None:
        md, png = write_report(result, report)
        (err if to_stdout else console).print(f"Wrote {md} and {png}")


PIPELINE = "pipeline"
"""The model name of the serving pipeline: not a registry model, it is built from the [pipeline] table."""


def _config(path: Path | None, names: list[str]) -> dict[str, dict[str, Any]]:
    """The --config file's tables that --models uses, read by `aisle train`'s parser (so the file `aisle train
    --config` reads is accepted as it is, and a typo in a table or a key is refused by name either way). Tables
    evaluate does not use (`[search]`, which only a bundle's search index needs, and models --models does not
    name) are left out with a one-line note naming them: said, not silently dropped."""
    from aisle.cli.train import load_config

    params = load_config(path)
    unused = [name for name in params if name not in names]
    if unused:
        err.print(f"note: {path}: ignoring {', '.join(f'[{n}]' for n in unused)} (not used by evaluate "
                  f"--models {','.join(names)})", markup=False, highlight=False, soft_wrap=True)
    return {name: table for name, table in params.items() if name in names}


def _pipeline_model(params: dict[str, dict[str, Any]], path: Path | None) -> type:
    """The pipeline that `aisle train --config` would build from the same file (one parser for both,
    `cli.train.pipeline_config`), as a harness model; without a [pipeline] table, the demo's fast sources."""
    from aisle.cli.data import DEMO_SOURCES_FAST
    from aisle.cli.train import pipeline_config
    from aisle.pipeline import as_model

    try:
        return as_model(pipeline_config(params, sources=DEMO_SOURCES_FAST))
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(f"{path or 'the default pipeline'}: [pipeline] {exc}", param_hint="--config"
                                 ) from None


def _pinned(cls: type, pinned: dict[str, Any] | None) -> type:
    """The model with the file's parameters pinned: a subclass whose search space holds one value per pinned
    key, so the runner fits it as given (and reports the parameters) while unpinned keys are still searched."""
    if not pinned:
        return cls
    space = {**dict(getattr(cls, "search_space", {}) or {}), **{k: [v] for k, v in pinned.items()}}
    return type(cls.__name__, (cls,), {"search_space": space, "__module__": cls.__module__})
