"""`aisle serve`: run the API over a bundle with uvicorn (one or several worker processes)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from aisle.config import Settings

console = Console()
err = Console(stderr=True, soft_wrap=True)

_ENV = "AISLE_SERVE_SETTINGS"  # settings JSON handed to worker processes


def app_factory() -> Any:
    """Build the app in a uvicorn worker from the settings `serve` put in the environment."""
    from aisle.config import Settings
    from aisle.serve import create_app

    return create_app(Settings.model_validate_json(os.environ[_ENV]))


def serve(
    bundle: Annotated[Path | None, typer.Option(help="Serving bundle written by `aisle train` (without --model).")]
    = None,
    config: Annotated[Path | None, typer.Option(help="Settings TOML (rules, keys, limits); AISLE_* variables "
                                                "override it, these options override both.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (more than one needs --state redis://).")]
    = None,
    state: Annotated[str | None, typer.Option(help="Live state: memory, or a redis:// URL.")] = None,
    store: Annotated[Path | None, typer.Option(help="DuckDB store that receives posted events.")] = None,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help="Key for write/admin routes (repeatable).")]
    = None,
    watch: Annotated[float | None, typer.Option(help="Reload when the bundle changes, checking every N seconds.")]
    = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve recommendations and search over HTTP (OpenAPI docs at /docs)."""
    from aisle.config import ConfigError, load_settings

    try:
        settings = load_settings(config, bundle=bundle, host=host, port=port, workers=workers, state=state,
                                 store=store, api_keys=tuple(api_key) if api_key else None, watch_seconds=watch)
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    from aisle.bundle import serving_problem

    problem = serving_problem(settings.bundle)  # a model bundle (`train --model`) would "serve" trending, no search
    if problem is not None:
        err.print(f"[red]error:[/] {problem}")
        raise typer.Exit(2)
    run(settings, log_level=log_level)


def run(settings: Settings, *, log_level: str = "warning") -> None:
    """Start uvicorn with `settings` (blocking until Ctrl-C)."""
    import uvicorn

    if settings.workers > 1 and settings.state == "memory":
        err.print("[yellow]warning:[/] several workers with in-memory state: each worker sees only the events "
                  "posted to it; use --state redis://... for real-time recommendations across workers")
    if not settings.api_keys:
        err.print("[yellow]note:[/] no API keys configured: write and admin routes are open (fine on localhost)")
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"Aisle is serving [bold]{settings.bundle}[/] on [bold link={url}/docs]{url}[/] with "
                  f"{settings.workers} worker(s). Open [bold]{url}/docs[/] to try the API. "
                  "Press Ctrl-C to stop.")
    os.environ[_ENV] = settings.model_dump_json()
    if settings.workers > 1:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="aisle-prom-"))
    uvicorn.run("aisle.cli.serve:app_factory", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=log_level, access_log=False, loop="uvloop", http="httptools")
