"""`aisle train`: fit models on a whole data source and write a versioned bundle for serving.

Without `--model` it builds everything `aisle serve` needs: the recommendation pipeline (its candidate
sources, neighbour tables, the learned combiner, per-user precomputed lists), the search engine (index +
LambdaMART reranker trained on the source's own search log), the catalog and each user's recent history.
With `--model a,b` it fits just those registry models (the deep-model workflow). Unlike `aisle evaluate`,
nothing is held out for scoring: a production model learns from every event (deep models and the pipeline's
combiner still hold each user's last item out internally). The same command runs under
`torchrun --nproc_per_node=N` for data-parallel training; rank 0 writes the bundle.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aisle.cli.console import error_line
from aisle.data.readers import READERS

console = Console()
err = Console(stderr=True, soft_wrap=True)


PIPELINE_TABLE = "pipeline"
"""A table of a `--config` file that is not a model: the serving pipeline (validated by PipelineConfig)."""
SEARCH_TABLE = "search"
"""The other one: search's encoder adaptation (`adapt = true` and `aisle.search.adapt.AdaptSettings` fields) and its
search memory (`memory = true`; `aisle.search.memory`)."""


def load_config(path: Path | None) -> dict[str, dict[str, Any]]:
    """Per-model hyper-parameters from a TOML or JSON file: `[sasrec] dropout = 0.5` / {"sasrec": {...}}.

    Strict, so a typo cannot silently train the default: a table that is no registry model (nor `[pipeline]`) and
    a parameter that the model's constructor does not take are errors that name them and list what is accepted.
    """
    from aisle.models.registry import MODELS

    if path is None:
        return {}
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--config") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise typer.BadParameter(f"{path}: expected a table of model name -> parameters", param_hint="--config")
    unknown = sorted(set(data) - set(MODELS) - {PIPELINE_TABLE, SEARCH_TABLE})
    if unknown:
        raise typer.BadParameter(f"{path}: unknown model table{'s' if len(unknown) > 1 else ''} "
                                 f"{', '.join(f'[{n}]' for n in unknown)}; accepted: "
                                 f"{', '.join(f'[{n}]' for n in (*MODELS, PIPELINE_TABLE, SEARCH_TABLE))}",
                                 param_hint="--config")
    for name, params in data.items():
        if name == PIPELINE_TABLE:
            continue
        accepted = search_keys() if name == SEARCH_TABLE else parameter_names(MODELS[name])
        wrong = sorted(set(params) - accepted)
        if wrong:
            raise typer.BadParameter(f"{path}: [{name}] has unknown parameter{'s' if len(wrong) > 1 else ''} "
                                     f"{', '.join(wrong)}; accepted: {', '.join(sorted(accepted))}",
                                     param_hint="--config")
    return data


def pipeline_config(params: dict[str, dict[str, Any]], *, sources: list[dict[str, Any]] | None = None) -> Any:
    """The `PipelineConfig` a `--config` file's `[pipeline]` table describes: the one reading of that table, for
    `aisle train` (what is served) and `aisle evaluate --models pipeline` (what is measured) alike. `sources`
    replaces the default sources when the table names none (evaluate's default: the demo's fast sources).
    Raises ValueError/TypeError naming what is wrong."""
    from aisle.pipeline import PipelineConfig

    table = dict(params.get(PIPELINE_TABLE, {}))
    if sources is not None:
        table.setdefault("sources", sources)
    return PipelineConfig().updated(table)


def search_keys() -> set[str]:
    """What a `[search]` table may set: `adapt`, `memory` and the fields of `AdaptSettings`."""
    from dataclasses import fields

    from aisle.search.adapt import AdaptSettings

    return {"adapt", "memory"} | {f.name for f in fields(AdaptSettings)}


def adapt_settings(params: dict[str, dict[str, Any]], flag: bool | None, seed: int) -> Any:
    """The `AdaptSettings` to fine-tune search's encoder with, or None when adaptation is off: `--adapt/--no-adapt`
    when given, else `adapt` of the `[search]` table (off by default). Raises ValueError for a bad value."""
    from aisle.search.adapt import AdaptSettings

    table = dict(params.get(SEARCH_TABLE, {}))
    enabled = table.pop("adapt", False) if flag is None else flag
    table.pop("adapt", None)
    table.pop("memory", None)
    if not enabled:
        return None
    table.setdefault("seed", seed)
    try:
        return AdaptSettings(**table)
    except TypeError as exc:
        raise ValueError(f"[search]: {exc}") from None


def search_memory_setting(params: dict[str, dict[str, Any]]) -> bool:
    """`memory` of the `[search]` table (default false): whether search keeps a memory of the log's searches
    (`aisle.search.memory`). Raises ValueError for anything but a boolean."""
    memory = params.get(SEARCH_TABLE, {}).get("memory", False)
    if not isinstance(memory, bool):
        raise ValueError(f"[search] memory must be true or false, not {memory!r}")
    return memory


def parameter_names(cls: type) -> set[str]:
    """The keyword arguments a model class takes: its own list when its constructor forwards `**overrides`
    (`parameter_names()`), else the named parameters of `__init__`."""
    names = getattr(cls, "parameter_names", None)
    if callable(names):
        return set(names())
    return _init_params(cls) - {"self"}


def train(
    dataspec: Annotated[str, typer.Argument(help="FORMAT:PATH[?key=value&...]; formats: " + ", ".join(READERS))],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (manifest, vocabularies, models).")],
    model: Annotated[str | None, typer.Option("--model", help="Comma-separated registry names, e.g. sasrec,itemknn: "
                                              "a model bundle for evaluation and distillation, which `aisle serve` "
                                              "refuses; default: the whole serving bundle (pipeline + search).")]
    = None,
    config: Annotated[Path | None, typer.Option(help="TOML/JSON file of per-model hyper-parameters; a [pipeline] "
                                                "table sets the pipeline (e.g. sources, per_source).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every model that uses randomness.")] = 0,
    search: Annotated[bool, typer.Option(help="Build the search index (serving bundle only).")] = True,
    dense: Annotated[bool, typer.Option(help="Search with MiniLM vectors too (embeddings cached in $AISLE_CACHE).")]
    = True,
    adapt: Annotated[bool | None, typer.Option(help="Fine-tune search's MiniLM encoder on the source's own searches "
                                               "followed by clicks, carts and purchases (skipped, and said so, "
                                               "below [search] min_pairs pairs); default: `adapt` of the "
                                               "--config [search] table, else off.")] = None,
) -> None:
    """Fit models on all events of a source and save them as a bundle (works under torchrun too)."""
    if model is None:
        serving_bundle(dataspec, out, params=load_config(config), seed=seed, search=search, dense=dense, adapt=adapt)
        return
    from aisle.bundle import Bundle, fingerprint
    from aisle.data.readers import read_dataspec
    from aisle.data.validation import DataError
    from aisle.evaluate.protocol import item_vocab
    from aisle.models.base import TrainData
    from aisle.models.registry import MODELS
    from aisle.train.distributed import DistContext

    names = [m.strip() for m in model.split(",") if m.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        err.print(error_line(f"unknown model {', '.join(unknown) or '(none)'}; known: {', '.join(MODELS)}"))
        raise typer.Exit(2)
    params = load_config(config)
    ctx = DistContext.from_env()
    try:
        data = read_dataspec(dataspec)
    except (DataError, ValueError, FileNotFoundError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2 if not isinstance(exc, DataError) else 1) from None
    items = item_vocab(data.events, data.items)
    train_data = TrainData.from_events(data.events, items=items, catalog=data.items if data.items.height else None)
    fitted: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    table = Table(title=f"Trained on {dataspec}", title_justify="left")
    for col in ("model", "fit s", "internal validation NDCG@10", "epochs"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name in names:
        cls = MODELS[name]
        kwargs = dict(params.get(name, {}))
        if "seed" in _init_params(cls):
            kwargs.setdefault("seed", seed)
        t0 = time.perf_counter()
        fitted[name] = cls(**kwargs).fit(train_data)
        seconds = time.perf_counter() - t0
        result = getattr(fitted[name], "result", None)
        # a model trained without a hold-out has no validation metric (best_metric stays -inf): show "-" and
        # leave the key out, so the manifest stays strict JSON (-Infinity is not JSON)
        valid = result.best_metric if result is not None and math.isfinite(result.best_metric) else None
        metrics[name] = {"fit_seconds": round(seconds, 2), "params": kwargs}
        if result is not None:
            metrics[name].update({"best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
            if valid is not None:
                metrics[name]["valid_NDCG@10"] = valid
        table.add_row(name, f"{seconds:.1f}", f"{valid:.4f}" if valid is not None else "-",
                      str(result.epochs_run) if result else "-")
    if ctx.is_main:
        bundle = Bundle(items=items, users=train_data.users, models=fitted)
        bundle.save(out, data_fingerprint=fingerprint(data.events), metrics=metrics)
        console.print(table)
        console.print(f"Model bundle written to [bold]{out}[/] ({len(fitted)} model(s), {len(items):,} items): for "
                      "evaluation and distillation, not for serving (`aisle serve` refuses it). Build a serving "
                      "bundle with `aisle train DATASPEC --out DIR` without --model.")
    ctx.close()


def serving_bundle(dataspec: str, out: Path, *, params: dict[str, dict[str, Any]], seed: int, search: bool = True,
                   dense: bool = True, adapt: bool | None = None) -> Path:
    """Build and save the whole serving bundle; prints what was built (used by `aisle train` and `aisle demo`).

    Under `torchrun` every rank builds (a deep source trains data-parallel, so all ranks take part in its fit) but
    only rank 0 writes `out` and prints; the others wait at a barrier until the bundle is whole, so no two
    processes ever write the same folder.
    """
    from aisle.bundle import build_serving_bundle, fingerprint
    from aisle.data.readers import read_dataspec
    from aisle.data.validation import DataError
    from aisle.train.distributed import DistContext

    try:  # the configuration first: a typo in it must not cost a data read
        pcfg = pipeline_config(params)
        adapt_cfg = adapt_settings(params, adapt, seed) if search else None
        memory = search_memory_setting(params)
        if adapt_cfg is not None and not dense:
            raise ValueError("--adapt fine-tunes the dense search encoder: it needs --dense")
        data = read_dataspec(dataspec)
    except (DataError, ValueError, FileNotFoundError, TypeError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2 if not isinstance(exc, DataError) else 1) from None
    ctx = DistContext.from_env()
    t0 = time.perf_counter()
    status = err.status("Training the serving bundle ...") if ctx.is_main else None  # one spinner, rank 0's

    def progress(msg: str) -> None:
        if status is not None:
            status.update(f"Training the serving bundle: {msg} ...")

    with status or contextlib.nullcontext():
        bundle = build_serving_bundle(data, pcfg, seed=seed, search=search, dense=dense, progress=progress,
                                      adapt=adapt_cfg, search_memory=memory)
    if not ctx.is_main:
        ctx.barrier()  # rank 0 is writing the bundle
        ctx.close()
        return out
    bundle.save(out, data_fingerprint=fingerprint(data.events), metrics=bundle.manifest.get("metrics", {}))
    ctx.barrier()
    ctx.close()
    table = Table(title=f"Serving bundle for {dataspec}", title_justify="left")
    for col in ("part", "what", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for part, info in bundle.manifest["metrics"].get("parts", {}).items():
        table.add_row(part, info["what"], f"{info['seconds']:.1f}")
    console.print(table)
    encoder = bundle.manifest["metrics"].get("parts", {}).get("search_encoder")
    if encoder is not None:
        console.print(f"Search encoder: {encoder['what']}")
    console.print(f"Bundle written to [bold]{out}[/] in {time.perf_counter() - t0:.0f}s. Serve it with: "
                  f"[bold]aisle serve --bundle {out}[/]")
    return out


def _init_params(cls: type) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return set()
