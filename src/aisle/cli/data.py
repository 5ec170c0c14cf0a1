"""Data commands: generate a synthetic store, ingest a source into the store, show its statistics, export it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from aisle.cli.console import error_line
from aisle.data.readers import READERS, DataSpec, read_dataspec
from aisle.data.validation import DataError
from aisle.store import DEFAULT_DB, StoreStats, describe, is_postgres_url, open_store

console = Console()
err = Console(stderr=True, soft_wrap=True)  # never break a file path across lines

DbOption = Annotated[str, typer.Option("--db", help="The store: a DuckDB file (created if missing) or a "
                                        "postgresql://USER@HOST[:PORT]/DB URL (tables created on first use).")]


def _store_errors(db: str | Path) -> tuple[type[BaseException], ...]:
    """What opening or using the store `db` raises for a user's mistake (no store there, server unreachable):
    errors to print in one line, not as a traceback."""
    if not is_postgres_url(str(db)):
        return (FileNotFoundError,)
    import psycopg
    import psycopg_pool

    return (FileNotFoundError, psycopg.Error, psycopg_pool.PoolTimeout)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write items/users/events.parquet (and the "
                                                   "impression log, impressions.parquet) into.")],
    items: Annotated[int, typer.Option(help="Number of catalog items.")] = 5_000,
    users: Annotated[int, typer.Option(help="Number of shoppers.")] = 2_000,
    events: Annotated[int, typer.Option(help="Number of events (views, carts, purchases, searches, ...).")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same store.")] = 0,
    replenishment: Annotated[float, typer.Option(
        help="Share of shoppers who rebuy consumables on planted cadences (0: the base store).")] = 0.0,
) -> None:
    """Generate the built-in synthetic store (catalog, shoppers, sessions) as an `aisle:` folder."""
    from aisle.data.synthetic import SyntheticConfig
    from aisle.data.synthetic import generate as synth

    t0 = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("Generating events", total=events)
        store = synth(SyntheticConfig(n_items=items, n_users=users, n_events=events, seed=seed,
                                      replenishment=replenishment),
                      progress=lambda done, total: bar.update(task, completed=done, total=total))
    store.write(out)
    console.print(f"Wrote {store.items.height:,} items, {store.users.height:,} users and {store.events.height:,} "
                  f"events to [bold]{out}[/] in {time.perf_counter() - t0:.1f}s. Ingest with: "
                  f"[bold]aisle ingest aisle:{out}[/]")


def ingest(
    dataspec: Annotated[str, typer.Argument(help="FORMAT:PATH[?key=value&...]; formats: " + ", ".join(READERS))],
    db: DbOption = str(DEFAULT_DB),
    on_error: Annotated[str, typer.Option("--on-error", help="fail: stop at the first bad row (exit 1); "
                                          "skip: load the good rows and write the bad ones to --rejects.")] = "fail",
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows (JSON lines) under skip; "
                                                 "default: beside the store.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Read, validate and store a data source. Re-ingesting the same events does not duplicate them."""
    if on_error not in ("fail", "skip"):
        raise typer.BadParameter("must be 'fail' or 'skip'", param_hint="--on-error")
    try:
        spec = DataSpec.parse(dataspec)
        t0 = time.perf_counter()
        with err.status(f"Reading and validating {spec} ..."):
            data = read_dataspec(spec, on_error=on_error)  # type: ignore[arg-type]
        read_s = time.perf_counter() - t0
    except DataError as exc:
        err.print(error_line(f"{exc}\n(use --on-error skip to load the good rows and write the bad ones to a "
                  "rejects file)"))
        raise typer.Exit(1) from None
    except (ValueError, FileNotFoundError, OSError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    rejects_path = None
    if data.log.rejects:
        beside = Path() if is_postgres_url(str(db)) else Path(db).parent  # a server's store: the current folder
        rejects_path = rejects or beside / f"rejects-{spec.format}-{spec.path.stem}.jsonl"
        data.log.write(rejects_path)
    t1 = time.perf_counter()
    try:
        with open_store(db) as store, _progress() as bar:
            task = bar.add_task("Storing events", total=data.events.height)
            appended = store.ingest(data, progress=lambda n: bar.advance(task, n))
            totals = store.stats()
    except _store_errors(db) as exc:
        err.print(error_line(f"{describe(db)}: {exc}"))
        raise typer.Exit(2) from None
    write_s = time.perf_counter() - t1
    ev = data.events
    report: dict[str, Any] = {
        "source": str(spec),
        "db": describe(db),
        "events": ev.height,
        "users": ev["user_id"].n_unique(),
        "items": ev["item_id"].drop_nulls().n_unique() if ev.height else data.items.height,
        "tables": {t: {**c, **({"inserted": appended[t].inserted, "duplicates": appended[t].duplicates}
                               if t in appended else {})} for t, c in data.accounting().items()},
        "rejects_file": str(rejects_path) if rejects_path else None,
        "seconds": {"read": round(read_s, 3), "store": round(write_s, 3)},
        "store": totals.as_dict(),
    }
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    table = Table(title=f"Ingested {spec}", title_justify="left")
    for col in ("table", "total", "loaded", "rejected", "new", "duplicates"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for t, c in report["tables"].items():
        if c["total"] or c["loaded"]:
            table.add_row(t, f"{c['total']:,}", f"{c['loaded']:,}", f"{c['rejected']:,}",
                          f"{c.get('inserted', 0):,}", f"{c.get('duplicates', 0):,}")
    console.print(table)
    for t, c in report["tables"].items():
        if c["total"]:
            console.print(f"{t}: loaded {c['loaded']:,} + rejected {c['rejected']:,} = total {c['total']:,}")
    console.print(f"Source has {report['events']:,} events from {report['users']:,} users on {report['items']:,} "
                  f"items; read {read_s:.1f}s, stored {write_s:.1f}s into {describe(db)}.")
    if rejects_path:
        console.print(f"[yellow]{len(data.log.rejects):,} rejected rows written to {rejects_path}[/]")


def stats(
    db: DbOption = str(DEFAULT_DB),
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON on stdout.")] = False,
) -> None:
    """Users, items, events by type, time span and density of the store."""
    try:
        with open_store(db, read_only=True) as store:
            s = store.stats()
    except _store_errors(db) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(s.as_dict(), indent=2))
        return
    console.print(stats_table(s, title=f"Store {describe(db)}"))


def export(
    db: Annotated[str, typer.Option("--db", help="The store to export (opened read-only): a DuckDB file or a "
                                    "postgresql:// URL.")] = str(DEFAULT_DB),
    out: Annotated[Path, typer.Option("--out", help="Folder to write items/users/events.parquet (and the "
                                                   "impression log, impressions.parquet) into.")]
    = Path("aisle-export"),
) -> None:
    """Write the whole store as an `aisle:` Parquet folder (a backup, or data for another machine or tool)."""
    try:
        with open_store(db, read_only=True) as store:
            paths = store.export_parquet(out)
            s = store.stats()
    except _store_errors(db) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    console.print(f"Exported {describe(db)} ({s.catalog_items:,} catalog items, {s.events:,} events) to "
                  f"{', '.join(p.name for p in paths.values())} in [bold]{out}[/]. Read it back with: "
                  f"[bold]aisle ingest aisle:{out}[/]")


def compact(
    db: Annotated[str, typer.Option("--db", help="The store: a DuckDB file or a postgresql:// URL.")]
    = str(DEFAULT_DB),
    state: Annotated[str | None, typer.Option(help="The Redis of the event stream (redis://...): its erasure records "
                                              "are forgotten and its append-only file rewritten too.")] = None,
    impression_grace: Annotated[float, typer.Option(
        min=0, help="Seconds an erasure record is kept after the erasure, for lists a worker served before it and "
                    "has not added to the impressions stream yet (buffered while Redis was unreachable).")] = 3600.0,
) -> None:
    """Make erased shoppers' bytes leave the files: rewrite the store (DuckDB: a fresh copy of the file;
    PostgreSQL: VACUUM FULL) and, with --state, Redis' append-only file. Servers keep running: a DuckDB store is
    taken under its file lock (writers wait), PostgreSQL tables are locked one at a time."""
    try:
        if is_postgres_url(db):
            with open_store(db) as store:
                done = store.compact()
        else:
            from aisle.store.embedded import store_lock

            if not Path(db).exists():
                raise FileNotFoundError(f"{db}: no Aisle store here")
            with store_lock(db), open_store(db) as store:
                done = store.compact()
    except _store_errors(db) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    console.print(f"Compacted {describe(db)}: {done.before_bytes / 2**20:,.1f} MiB -> {done.after_bytes / 2**20:,.1f} "
                  f"MiB in {done.seconds:.1f}s")
    if state:
        from aisle.serve.stream import compact_redis

        out = compact_redis(state, impression_grace_s=impression_grace)
        console.print(f"Redis: {out['erasure_records_forgotten']} erasure record(s) no longer needed were forgotten; "
                      + ("append-only file rewrite started" if out["aof_rewrite"] else "AOF is off: nothing on disk"))


def stats_table(s: StoreStats, *, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("users", f"{s.users:,}")
    table.add_row("items (catalog + seen in events)", f"{s.items:,}")
    table.add_row("catalog items", f"{s.catalog_items:,}")
    table.add_row("events", f"{s.events:,}")
    for t, n in s.events_by_type.items():
        table.add_row(f"  {t}", f"{n:,}")
    span = f"{s.first_event:%Y-%m-%d %H:%M} → {s.last_event:%Y-%m-%d %H:%M}" if s.first_event else "-"
    table.add_row("time span (UTC)", span)
    table.add_row("user-item pairs", f"{s.interactions:,}")
    table.add_row("density", f"{s.density:.4%}")
    return table


DEMO_SOURCES_FAST = [  # no deep model, no text model: the whole job in well under a minute (tests, CI)
    {"key": "als", "model": "als", "kind": "user", "params": {"factors": 32, "iterations": 8}},
    {"key": "itemknn", "model": "itemknn", "kind": "i2i", "decay": 0.7},
    {"key": "markov", "model": "markov", "kind": "i2i", "window": 5, "decay": 0.5},
    {"key": "fbt", "model": "fbt", "kind": "bought_together"},
    {"key": "trending", "model": "trending", "kind": "trending"},
]
DEMO_SOURCES = [  # + the deep sequential model on the session (the text model `content` costs ~0.2 s per item
    # description on a 2-core CPU, so the demo leaves it out; add it in a [pipeline] config for real catalogs).
    # SASRec trains a count of epochs (~30 s a fit on 2 free cores), not a time budget: with 25 wall-clock seconds
    # the epochs it reached (8 on 2 free cores, 5 beside another job), and so every figure of the demo's table,
    # moved from run to run with the machine's load. The 300-second budget only caps a far slower machine (the
    # cosine then fits into it, `TrainConfig.max_seconds`); a load that merely doubles a fit never reaches it.
    {"key": "sasrec", "model": "sasrec", "kind": "sequential",
     "params": {"epochs": 10, "max_seconds": 300.0, "progress": False}},
    *DEMO_SOURCES_FAST,
]


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes its store and bundle.")] = Path("aisle-data"),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic store and the models.")] = 0,
    items: Annotated[int, typer.Option(help="Catalog items of the synthetic store.")] = 3_000,
    users: Annotated[int, typer.Option(help="Shoppers.")] = 1_500,
    events: Annotated[int, typer.Option(help="Events.")] = 100_000,
    fast: Annotated[bool, typer.Option(help="Skip the deep and text models and dense search (seconds, not "
                                       "minutes).")] = False,
    serve: Annotated[bool, typer.Option(help="Serve the bundle on http://127.0.0.1:PORT at the end.")] = True,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
) -> None:
    """The main job on the built-in synthetic store: generate -> ingest -> train -> evaluate -> serve."""
    from aisle.cli.serve import run
    from aisle.cli.train import serving_bundle
    from aisle.config import Settings
    from aisle.evaluate.report import comparison_table
    from aisle.pipeline import PipelineConfig, compare

    t0 = time.perf_counter()
    store_dir, db, bundle = workdir / "synthetic", workdir / "demo.duckdb", workdir / "bundle"
    sources = DEMO_SOURCES_FAST if fast else DEMO_SOURCES
    console.rule("[bold]Aisle demo[/]: 1. generate the synthetic store")
    generate(out=store_dir, items=items, users=users, events=events, seed=seed)
    console.rule("2. ingest it into the embedded store")
    db.unlink(missing_ok=True)
    ingest(f"aisle:{store_dir}", db=db)
    # train and evaluate from the store, not the generated folder: the store is what a real shop has (and what
    # `aisle serve --store` keeps appending to), so the demo shows the path a shop retrains on
    console.rule("3. train the serving bundle from the store (pipeline sources, combiner, search index)")
    serving_bundle(f"store:{db}", bundle, params={"pipeline": {"sources": sources}}, seed=seed, dense=not fast)
    console.rule("4. evaluate: the pipeline next to each of its models (leave-one-out, full ranking)")
    data = read_dataspec(f"store:{db}")
    cfg = PipelineConfig.from_json({**PipelineConfig().to_json(), "sources": sources})
    exp = compare(data, cfg, seed=seed, console=err, name="synthetic store")
    report = exp.to_dict()
    console.print(comparison_table(report, title="Held-out test targets (the combiner learned on validation "
                                                 "targets only)"))
    from aisle.bundle import Bundle

    Bundle.load(bundle, search=False).write_report(bundle, report)
    console.print(f"Demo built in {time.perf_counter() - t0:.0f}s; the report is in {bundle}/report.json.")
    if serve:
        console.rule("5. serve")
        run(Settings(bundle=bundle, store=db, port=port))
