"""`aisle worker`: the long-running process that refreshes, refits, gates and publishes bundles (`aisle.worker`)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from aisle.cli.console import error_line
from aisle.stopping import stop_on_signals

err = Console(stderr=True, soft_wrap=True)


def worker(
    config: Annotated[Path | None, typer.Option(help="Settings TOML: bundle (the registry), store, state and a "
                                                "[worker] table.")] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", "--registry", help="The bundle registry folder the "
                                                "servers follow (their --bundle).")] = None,
    store: Annotated[str | None, typer.Option(help="The store the events are read from (DuckDB file or "
                                              "postgresql:// URL).")] = None,
    state: Annotated[str | None, typer.Option(help="The Redis the servers share (lease and notifications).")] = None,
    once: Annotated[str | None, typer.Option(help="Run one job and exit (cron-style): refresh or refit.")] = None,
    refresh_seconds: Annotated[float | None, typer.Option(help="Overrides [worker] refresh_seconds.")] = None,
) -> None:
    """Keep the served bundle current: refresh it from new events, refit and gate it, publish to the registry."""
    from aisle.cli.train import adapt_settings, load_config, search_memory_setting
    from aisle.config import ConfigError, load_settings
    from aisle.pipeline import PipelineConfig
    from aisle.worker import LeaseLostError, Worker

    if once is not None and once not in ("refresh", "refit"):
        err.print(error_line(f"--once takes refresh or refit, not {once!r}"))
        raise typer.Exit(2)
    try:
        settings = load_settings(config, bundle=bundle, store=store, state=state)
        if refresh_seconds is not None:
            settings = settings.model_copy(update={"worker": settings.worker.model_copy(
                update={"refresh_seconds": refresh_seconds})})
        params = load_config(settings.worker.pipeline) if settings.worker.pipeline is not None else {}
        pipeline = PipelineConfig().updated(params.get("pipeline", {}))
        adapt = adapt_settings(params, None, settings.worker.seed)  # as `aisle train --config` reads [search]
        runner = Worker(settings, pipeline=pipeline, adapt=adapt, search_memory=search_memory_setting(params))
    except (ConfigError, ValueError, OSError, typer.BadParameter) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aisle").setLevel(logging.INFO)
    if once is not None:
        runner.start()
        try:
            out = runner.run(once)
        except LeaseLostError as exc:
            err.print(error_line(exc))
            raise typer.Exit(1) from None
        finally:
            runner.lease.release()
        if out.decision is not None and not out.decision.promoted:
            raise typer.Exit(3)  # refused: cron and scripts can tell
        return
    stop = threading.Event()
    stop_on_signals(stop)
    runner.run_forever(stop)
