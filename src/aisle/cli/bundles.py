"""`aisle bundles`: list, publish, promote and roll back the versions of a bundle registry (`aisle.registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from aisle.cli.console import error_line

if TYPE_CHECKING:
    from aisle.registry import Registry

console = Console()
err = Console(stderr=True, soft_wrap=True)

app = typer.Typer(name="bundles", help="The bundle registry: versions, the one being served, promotion and rollback.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

Root = Annotated[Path | None, typer.Option("--registry", help="Registry folder (default: the settings' `bundle`, "
                                           "which `aisle serve` and `aisle worker` share).")]
Config = Annotated[Path | None, typer.Option(help="Settings TOML (bundle, state, registry_keep).")]
State = Annotated[str | None, typer.Option(help="The Redis the servers share (redis://...): they are told at once; "
                                           "without it they notice within their poll interval.")]


def _open(root: Path | None, config: Path | None, state: str | None = None) -> tuple[Registry, str]:
    from aisle.config import ConfigError, load_settings
    from aisle.registry import Registry

    try:
        settings = load_settings(config, bundle=root, state=state)
    except (ConfigError, ValueError, OSError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    return Registry(settings.bundle, keep=settings.registry_keep), settings.state


def _tell(state: str, action: str, version: str | None) -> None:
    from aisle.registry import notify

    if state.startswith(("redis://", "rediss://", "unix://")):
        try:
            n = notify(state, action, version)
            console.print(f"told {n} listening server worker(s) through Redis")
        except Exception as exc:  # the pointer is written; pollers still follow
            err.print(f"[yellow]warning:[/] could not notify through {state}: {exc}; servers follow by polling")


def _fmt(metrics: dict[str, object]) -> str:
    v = metrics.get("ndcg@10")
    return f"{v:.4f}" if isinstance(v, float) else "-"


def list_(root: Root = None, config: Config = None,
          json_out: Annotated[bool, typer.Option("--json", help="One JSON object per version (for scripts: the "
                                                 "table wraps to the terminal's width).")] = False) -> None:
    """Every version with its gate decision (candidate and serving NDCG@10, reason); * marks the current one."""
    reg, _ = _open(root, config)
    versions = reg.list()
    if json_out:
        import json

        for v in versions:
            print(json.dumps({"version": v.version, "current": v.current,
                              "decision": v.decision.to_dict() if v.decision else None}, default=str))
        return
    if not versions:
        console.print(f"no versions in {reg.root}")
        return
    table = Table(title=f"bundles in {reg.root}")
    for col in ("", "version", "kind", "promoted", "candidate ndcg@10", "serving ndcg@10", "reason"):
        table.add_column(col)
    for v in versions:
        d = v.decision
        table.add_row("*" if v.current else "", v.version, d.kind if d else "-",
                      ("yes" if d.promoted else "no") if d else "-", _fmt(d.candidate) if d else "-",
                      _fmt(d.serving) if d else "-", d.reason if d else "")
    console.print(table)


def publish(bundle: Annotated[Path, typer.Argument(help="A bundle folder written by `aisle train`.")],
            root: Root = None, config: Config = None, state: State = None,
            promote: Annotated[bool, typer.Option(help="Make it the current version.")] = True) -> None:
    """Add a bundle built elsewhere as a new version (by hand: no gate runs; `aisle worker` gates its own)."""
    from aisle.bundle import serving_problem
    from aisle.registry import Decision, RegistryError

    problem = serving_problem(bundle)
    if problem is not None:
        err.print(error_line(problem))
        raise typer.Exit(2)
    reg, st = _open(root, config, state)
    try:
        version = reg.publish(bundle, Decision("manual", promote, "published by hand"))
    except RegistryError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    console.print(f"published {version}" + (" and made it current" if promote else ""))
    if promote:
        _tell(st, "promote", version)


def promote(version: Annotated[str, typer.Argument(help="A version from `aisle bundles list`.")],
            root: Root = None, config: Config = None, state: State = None) -> None:
    """Serve VERSION (overrides the gate: a person's decision, recorded in the history)."""
    from aisle.registry import RegistryError

    reg, st = _open(root, config, state)
    try:
        reg.promote(version)
    except RegistryError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    console.print(f"{version} is current")
    _tell(st, "promote", version)


def rollback(root: Root = None, config: Config = None, state: State = None) -> None:
    """Serve the previously promoted version again."""
    from aisle.registry import RegistryError

    reg, st = _open(root, config, state)
    try:
        version = reg.rollback()
    except RegistryError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from None
    console.print(f"rolled back: {version} is current")
    _tell(st, "promote", version)


app.command("list")(list_)
app.command("publish")(publish)
app.command("promote")(promote)
app.command("rollback")(rollback)
