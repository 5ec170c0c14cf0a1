"""The `aisle` command line. argv is parsed here and nowhere else; commands call the library."""

from __future__ import annotations

import typer

from aisle.cli import bundles as _bundles
from aisle.cli import data as _data
from aisle.cli import evaluate as _evaluate
from aisle.cli import search as _search
from aisle.cli import serve as _serve
from aisle.cli import simulate as _simulate
from aisle.cli import train as _train
from aisle.cli import worker as _worker

app = typer.Typer(
    name="aisle",
    help="Aisle: search and recommendations for an online store, on one machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("generate")(_data.generate)
app.command("ingest")(_data.ingest)
app.command("stats")(_data.stats)
app.command("export")(_data.export)
app.command("compact")(_data.compact)
app.command("demo")(_data.demo)
app.command("evaluate")(_evaluate.evaluate)
app.command("train")(_train.train)
app.command("search-eval")(_search.search_eval)
app.command("serve")(_serve.serve)
app.command("consume")(_serve.consume)
app.command("worker")(_worker.worker)
app.add_typer(_bundles.app, name="bundles")
app.command("simulate")(_simulate.simulate)
app.command("ope")(_simulate.ope)
app.add_typer(_simulate.experiment_app, name="experiment")


def main() -> None:
    app()


__all__ = ["app", "main"]
