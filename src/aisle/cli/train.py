"""`aisle train`: fit models on a whole data source and write a versioned bundle for serving.

Unlike `aisle evaluate`, nothing is held out for scoring: a production model learns from every event
(deep models still hold each user's last item out internally, to stop early). The same command runs
under `torchrun --nproc_per_node=N` for data-parallel training; rank 0 writes the bundle.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aisle.data.readers import READERS

console = Console()
err = Console(stderr=True, soft_wrap=True)


def load_config(path: Path | None) -> dict[str, dict[str, Any]]:
    """Per-model hyper-parameters from a TOML or JSON file: `[sasrec] dropout = 0.5` / {"sasrec": {...}}."""
    if path is None:
        return {}
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise typer.BadParameter(f"{path}: expected a table of model name -> parameters", param_hint="--config")
    return data


def train(
    dataspec: Annotated[str, typer.Argument(help="FORMAT:PATH[?key=value&...]; formats: " + ", ".join(READERS))],
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (manifest, vocabularies, models).")],
    model: Annotated[str, typer.Option("--model", help="Comma-separated registry names, e.g. sasrec,itemknn.")]
    = "sasrec",
    config: Annotated[Path | None, typer.Option(help="TOML/JSON file of per-model hyper-parameters.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for every model that uses randomness.")] = 0,
) -> None:
    """Fit models on all events of a source and save them as a bundle (works under torchrun too)."""
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
        err.print(f"[red]error:[/] unknown model {', '.join(unknown) or '(none)'}; known: {', '.join(MODELS)}")
        raise typer.Exit(2)
    params = load_config(config)
    ctx = DistContext.from_env()
    try:
        data = read_dataspec(dataspec)
    except (DataError, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/] {exc}")
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
        metrics[name] = {"fit_seconds": round(seconds, 2), "params": kwargs}
        if result is not None:
            metrics[name].update({"valid_NDCG@10": result.best_metric, "best_epoch": result.best_epoch,
                                  "epochs_run": result.epochs_run})
        table.add_row(name, f"{seconds:.1f}", f"{result.best_metric:.4f}" if result else "-",
                      str(result.epochs_run) if result else "-")
    if ctx.is_main:
        bundle = Bundle(items=items, users=train_data.users, models=fitted)
        bundle.save(out, data_fingerprint=fingerprint(data.events), metrics=metrics)
        console.print(table)
        console.print(f"Bundle written to [bold]{out}[/] ({len(fitted)} model(s), {len(items):,} items).")
    ctx.close()


def _init_params(cls: type) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return set()
