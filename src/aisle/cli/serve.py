"""`aisle serve`: run the API over a bundle with uvicorn (one or several worker processes).

Worker processes get their settings from a file, never from the environment: API keys in an environment
variable would be readable by anyone who can read `/proc/PID/environ` of a worker (and are inherited by every
child process). `run` writes the settings JSON into a fresh private folder, readable by this user only (0600),
hands the workers its *path* (AISLE_SERVE_SETTINGS), and removes it when the server stops (Ctrl-C or SIGTERM). A
server killed outright (SIGKILL, out of memory) cannot, so each such folder holds a lock while its server runs, and
the next `aisle serve` of the same user removes the folders whose lock is free. Keys can come from a file too
(`--api-key-file`, one per line), so they need not appear on the command line either.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from aisle.cli.console import error_line
from aisle.stopping import sigterm_raises_exit

if TYPE_CHECKING:
    from aisle.config import Settings

console = Console()
err = Console(stderr=True, soft_wrap=True)

_ENV = "AISLE_SERVE_SETTINGS"  # path of the settings JSON (mode 0600) handed to worker processes


def app_factory() -> Any:
    """Build the app in a uvicorn worker from the settings file `run` wrote."""
    from aisle.config import Settings
    from aisle.serve import create_app

    return create_app(Settings.model_validate_json(Path(os.environ[_ENV]).read_text(encoding="utf-8")))


def read_key_file(path: Path) -> tuple[str, ...]:
    """API keys from `path`, one per line (blank lines and `#` comments ignored). Like ssh with a private key,
    a file that others can read is refused: the keys in it are no longer secret."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{path}: API key file is readable by others (mode {stat.filemode(mode)}); "
                         f"chmod 600 {path}")
    keys = tuple(k for k in (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
                 if k and not k.startswith("#"))
    if not keys:
        raise ValueError(f"{path}: no API key in the file")
    return keys


_HELD = ".held"  # the file in each private folder that its server keeps locked (flock) while it runs
_SETTINGS, _METRICS = "aisle-serve-", "aisle-prom-"  # the private folders' name prefixes
_held: dict[Path, int] = {}  # this process's private folders and their locked descriptors


def _private_folder(prefix: str) -> Path:
    """A new folder `prefix`* in the temp directory that only this user can enter (0700), held by this process: an
    flock on its `.held` file, which the kernel drops when the process ends, however it ends. The file takes that
    name only once locked, so a sweep never sees a free lock in a folder that is still being made."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    fd = os.open(folder / f"{_HELD}.new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    (folder / f"{_HELD}.new").rename(folder / _HELD)
    _held[folder] = fd
    return folder


def _remove_folder(folder: Path) -> None:
    """Remove one of this process's private folders (and let go of its lock)."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(KeyError, OSError):
        os.close(_held.pop(folder))


def _sweep_private_folders() -> list[Path]:
    """Remove this user's private folders left by servers that were killed outright (their lock is free); folders
    without a `.held` file (being made, or from an older Aisle) are left alone. Returns what it removed."""
    removed = []
    for prefix in (_SETTINGS, _METRICS):
        for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            try:
                if folder.stat().st_uid != os.getuid():
                    continue
                fd = os.open(folder / _HELD, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its server is running
                continue
            finally:
                os.close(fd)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def write_settings_file(settings: Settings) -> Path:
    """The settings JSON in a new private folder (0700), the file itself 0600; the caller removes the folder
    (`_remove_folder`)."""
    path = _private_folder(_SETTINGS) / "settings.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(settings.model_dump_json())
    return path


def serve(
    bundle: Annotated[Path | None, typer.Option(help="Serving bundle written by `aisle train` (without --model), or a "
                                                "bundle registry (`aisle bundles`): its current version is served "
                                                "and followed.")]
    = None,
    config: Annotated[Path | None, typer.Option(help="Settings TOML (rules, keys, limits); AISLE_* variables "
                                                "override it, these options override both.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (more than one needs --state redis://).")]
    = None,
    state: Annotated[str | None, typer.Option(help="Live state: memory, or a redis:// URL.")] = None,
    store: Annotated[str | None, typer.Option(help="Store that receives posted events: a DuckDB file or a "
                                              "postgresql:// URL.")] = None,
    api_key: Annotated[list[str] | None, typer.Option("--api-key", help="Key for write/admin routes (repeatable).")]
    = None,
    api_key_file: Annotated[Path | None, typer.Option(help="File of keys for write/admin routes, one per line, "
                                                      "readable by its owner only (chmod 600).")] = None,
    watch: Annotated[float | None, typer.Option(help="A bundle folder: reload when its manifest changes, checking "
                                                "every N seconds (0 = only on POST /admin/reload).")]
    = None,
    follow: Annotated[float | None, typer.Option(help="A registry: check its current version every N seconds, the "
                                                 "fallback to Redis notices (default 2; 0 = notices only).")]
    = None,
    consumers: Annotated[int | None, typer.Option(help="With --state redis:// and --store: stream consumer processes "
                                                  "sharing the event stream (default 1; more where the lag grows).")]
    = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve recommendations and search over HTTP (OpenAPI docs at /docs)."""
    from aisle.config import ConfigError, load_settings

    try:
        keys = tuple(api_key or ()) + (read_key_file(api_key_file) if api_key_file else ())
        settings = load_settings(config, bundle=bundle, host=host, port=port, workers=workers, state=state,
                                 store=store, api_keys=keys or None, watch_seconds=watch,
                                 follow_seconds=follow, consumers=consumers)
    except (ConfigError, ValueError, OSError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    problem = _store_problem(settings.store)
    if problem is not None:
        err.print(error_line(problem))
        raise typer.Exit(2)
    problem = _bundle_problem(settings.bundle)
    if problem is not None:
        err.print(error_line(problem))
        raise typer.Exit(2)
    for arm in settings.experiment.arms if settings.experiment is not None else ():
        problem = _bundle_problem(arm.bundle) if arm.bundle is not None else None
        if problem is not None:  # each arm's bundle is loaded beside the server's: refuse a wrong one now
            err.print(error_line(f"experiment arm {arm.name!r}: {problem}"))
            raise typer.Exit(2)
    run(settings, log_level=log_level)


def _bundle_problem(bundle: Path) -> str | None:
    """Why `bundle` cannot be served, or None. A model bundle (`train --model`) would "serve" trending without
    search; a registry's current version is checked the same way, and a registry with no current version yet is
    accepted (the workers answer /ready 503 until one is promoted, then follow it)."""
    from aisle.bundle import serving_problem
    from aisle.registry import Registry, is_registry

    if not is_registry(bundle):
        return serving_problem(bundle)
    current = Registry(bundle).current_path()
    if current is None:
        err.print(f"[yellow]note:[/] the registry {bundle} has no current version yet: the server is not ready until "
                  "one is promoted (aisle bundles publish, or aisle worker)")
        return None
    return serving_problem(current)


def _store_problem(store: Path | str | None) -> str | None:
    """Why a PostgreSQL `--store` cannot be used (server unreachable, no permission), or None. Checked once before
    the workers start, which also creates the store's tables; a DuckDB file is created by the first write."""
    from aisle.store import describe, is_postgres_url, open_store

    if not is_postgres_url(store):
        return None
    import psycopg
    import psycopg_pool

    try:
        open_store(str(store)).close()
    except (psycopg.Error, psycopg_pool.PoolTimeout, RuntimeError) as exc:
        return f"--store {describe(str(store))}: {exc}"
    return None


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
    consumer_process = settings.consume and settings.state != "memory" and settings.store is not None
    if consumer_process:  # the stream consumers run in a process of their own, not in the workers
        settings = settings.model_copy(update={"consume": False})
    for folder in _sweep_private_folders():
        err.print(f"note: removed {folder}, left by a server that was killed")
    settings_file = write_settings_file(settings)
    os.environ[_ENV] = str(settings_file)
    own_metrics_dir = settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_metrics_dir:  # the workers' metric files, removed with the settings when the server stops
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_private_folder(_METRICS))
    consumers: list[Any] = []
    try:
        with sigterm_raises_exit():
            if consumer_process:
                from aisle.serve.consumers import processes

                consumers = [c.start() for c in processes(settings, settings_file)]
            uvicorn.run("aisle.cli.serve:app_factory", factory=True, host=settings.host, port=settings.port,
                        workers=settings.workers, log_level=log_level, access_log=False, loop="uvloop",
                        http="aisle.serve.http:OneWriteProtocol")  # httptools, one write per answer
    finally:
        for c in consumers:  # after the workers: their last impressions are in the stream by now
            c.stop()
        _remove_folder(settings_file.parent)
        if own_metrics_dir:
            _remove_folder(Path(os.environ.pop("PROMETHEUS_MULTIPROC_DIR")))


def consume(
    state: Annotated[str | None, typer.Option(help="The Redis the API writes its event stream to (redis://...).")]
    = None,
    store: Annotated[str | None, typer.Option(help="The store to write the events to: a DuckDB file or a "
                                              "postgresql:// URL.")] = None,
    config: Annotated[Path | None, typer.Option(help="Settings TOML (state, store, stream_claim_idle_s).")] = None,
    claim_idle: Annotated[float | None, typer.Option(help="Claim entries another consumer took and has not "
                                                     "acknowledged for this many seconds (it died).")] = None,
    name: Annotated[str | None, typer.Option(help="Consumer name in the group (default: host-pid).")] = None,
    stream: Annotated[str, typer.Option(help="Which stream: events (aisle:stream:events) or impressions "
                                        "(aisle:impressions, the served lists the workers log).")] = "events",
) -> None:
    """Write the API's event stream to the store (a consumer of the group `aisle-store`); runs until stopped.

    `aisle serve` already runs a consumer process beside its workers when the state is Redis and a store is set;
    this command adds consumers (or is the only one, with `consume = false` in the server's settings)."""
    import threading

    from aisle.config import ConfigError, load_settings
    from aisle.serve.sink import StoreSink
    from aisle.serve.stream import Consumer
    from aisle.stopping import stop_on_signals
    from aisle.store import describe

    try:
        settings = load_settings(config, state=state, store=store, stream_claim_idle_s=claim_idle)
    except (ConfigError, ValueError, OSError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    if settings.state == "memory" or settings.store is None:
        err.print(error_line("aisle consume needs --state redis://... and --store (a DuckDB file or a "
                  "postgresql:// URL)"))
        raise typer.Exit(2)
    problem = _store_problem(settings.store)
    if problem is not None:
        err.print(error_line(problem))
        raise typer.Exit(2)
    sink = StoreSink(settings.store)
    if stream not in ("events", "impressions"):
        err.print(error_line(f"--stream must be events or impressions, not {stream!r}"))
        raise typer.Exit(2)
    consumer = Consumer(settings.state, sink.locked, name=name, claim_idle_s=settings.stream_claim_idle_s,
                        stream=stream, count=1_000, pace_s=settings.impressions_store_s if stream == "impressions"
                        else settings.events_store_s)
    stop = threading.Event()
    stop_on_signals(stop)
    console.print(f"Consuming the {stream} stream of {settings.state} into {describe(str(settings.store))} as "
                  f"{consumer.name}. Press Ctrl-C to stop.")
    try:
        consumer.run(stop)
    finally:
        consumer.close()
        sink.close()
    console.print(f"Stopped: {consumer.consumed} {stream} rows written, {consumer.redelivered} entries redelivered.")
