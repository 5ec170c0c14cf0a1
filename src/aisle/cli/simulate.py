"""`aisle simulate`, `aisle ope` and `aisle experiment report`: measure a policy before it takes the traffic.

`simulate` runs shoppers with known tastes against the real API over a synthetic store and writes the impression
and event logs it produced; `ope` estimates another policy's reward from such a log; `experiment report` gives
per-arm outcomes with intervals and tests from any impression + event log (the simulator's or the API's).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console

from aisle.cli.console import error_line

console = Console()
err = Console(stderr=True)
experiment_app = typer.Typer(help="A/B experiments: per-arm outcomes with intervals and significance tests.",
                             no_args_is_help=True)


def _fail(msg: str) -> None:
    err.print(error_line(msg))
    raise typer.Exit(2)


def _pairs(text: str, option: str) -> dict[str, str]:
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise typer.BadParameter(f"expected NAME=VALUE[,NAME=VALUE...], got {part!r}", param_hint=option)
        out[name] = value
    return out


def simulate(
    policy: Annotated[str, typer.Option(help="Comma-separated policies, each run on its own: pipeline (the served "
                                        "bundle through the API), trending, random, oracle, epsilon:BASE:EPS.")]
    = "pipeline,trending,random,oracle",
    rounds: Annotated[int, typer.Option(help="Shopper sessions per run (one list each).")] = 1_000,
    k: Annotated[int, typer.Option("--k", help="Items per list.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the store and of the shoppers' draws.")] = 0,
    items: Annotated[int, typer.Option(help="Catalog items of the synthetic store.")] = 300,
    users: Annotated[int, typer.Option(help="Shoppers.")] = 200,
    events: Annotated[int, typer.Option(help="Events the bundle is trained on.")] = 8_000,
    new_items: Annotated[int, typer.Option(help="Newest items held out of the bundle; they launch during the "
                                           "run.")] = 20,
    batch: Annotated[int, typer.Option(help="Lists asked before their events go back to the API.")] = 1,
    arms: Annotated[str | None, typer.Option(help="An experiment instead: ARM=POLICY,... (shoppers split by a "
                                             "salted hash of their id), e.g. control=pipeline,treatment=trending.")]
    = None,
    lift: Annotated[str | None, typer.Option(help="Planted conversion lifts per arm, ARM=FRACTION,... "
                                             "(treatment=0.1: its sessions end in a purchase 10% more often).")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Write impressions.parquet, events.parquet, items.parquet, "
                                             "metrics.json and world.json here (one sub-folder per policy).")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Closed-loop simulation: click rate, conversion, revenue, regret against the oracle, new-item coverage."""
    from aisle.cli.data import _progress
    from aisle.simulate import Arm, WorldConfig, build_world, make_policy, parse_policy
    from aisle.simulate import simulate as run

    if rounds < 1 or k < 1 or batch < 1:
        _fail("--rounds, --k and --batch must be positive")
    try:
        cfg = WorldConfig(n_items=items, n_users=users, n_events=events, seed=seed, new_items=new_items)
        cfg.store_config()
    except ValueError as exc:
        _fail(str(exc))
    arm_policies = _pairs(arms, "--arms") if arms else {}
    lifts_text = _pairs(lift, "--lift") if lift else {}
    unknown = sorted(set(lifts_text) - set(arm_policies))
    if unknown:
        _fail(f"--lift names arm{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} that --arms does not")
    try:
        lifts = {a: float(v) for a, v in lifts_text.items()}
    except ValueError:
        _fail(f"--lift values must be numbers: {lift}")
    if any(v <= -1 for v in lifts.values()):
        _fail("a --lift must be above -1 (-0.2: 20% fewer sessions buy)")
    names = list(arm_policies.values()) or [p.strip() for p in policy.split(",") if p.strip()]
    if not names:
        _fail("--policy names no policy")
    for name in names:
        try:
            parse_policy(name)
        except ValueError as exc:
            _fail(str(exc))
    with _progress() as bar:
        task = bar.add_task("building the store and bundle", total=None)
        world = build_world(cfg, progress=lambda m: bar.update(task, description=m))
        results: dict[str, Any] = {}
        try:
            plans: dict[str, Any] = {}
            try:
                if arm_policies:
                    plans["experiment"] = {a: Arm(make_policy(p, world, seed=seed), lifts.get(a, 0.0))
                                           for a, p in arm_policies.items()}
                else:
                    for name in (p.strip() for p in policy.split(",") if p.strip()):
                        plans[name] = make_policy(name, world, seed=seed)
            except ValueError as exc:
                _fail(str(exc))
            for name, plan in plans.items():
                bar.update(task, description=f"simulating {name}", total=rounds, completed=0)
                res = run(world, plan, rounds, k=k, seed=seed, batch=batch,
                          progress=lambda d, t: bar.update(task, completed=d))
                results[name] = res
        finally:
            world.close()
    if out is not None:
        for name, res in results.items():
            folder = res.write(out if len(results) == 1 else out / name.replace(":", "_"))
            (folder / "world.json").write_text(json.dumps({**asdict(cfg), "k": k, "rounds": rounds, "seed": seed},
                                                          indent=2) + "\n")
    metrics = {f"{n}/{a}" if n == "experiment" else n: m for n, r in results.items() for a, m in r.metrics.items()}
    if json_out:
        console.print_json(json.dumps(metrics))
        return
    cols = ("click_rate", "conversion", "revenue_per_session", "cumulative_regret", "new_item_coverage")
    typer.echo(f"{'policy':<24}" + "".join(f"{c:>22}" for c in cols))
    for name, m in metrics.items():
        typer.echo(f"{name:<24}" + "".join(f"{m[c]:>22.4f}" for c in cols))
    if out is not None:
        typer.echo(f"logs written under {out}")


def ope(
    log: Annotated[Path, typer.Argument(help="A folder `aisle simulate --out` wrote (impressions.parquet, "
                                       "events.parquet, world.json); its policy must be stochastic "
                                       "(e.g. epsilon:trending:0.5) for other policies to be estimable.")],
    policy: Annotated[str, typer.Option(help="Comma-separated candidate policies: pipeline, trending, random, "
                                        "oracle, epsilon:BASE:EPS.")] = "oracle,random",
    reward: Annotated[str, typer.Option(help="click, add_to_cart or purchase.")] = "click",
    confidence: Annotated[float, typer.Option(help="Interval level.")] = 0.95,
    boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1_000,
    json_out: Annotated[bool, typer.Option("--json", help="Print the estimates as JSON.")] = False,
) -> None:
    """Off-policy estimates (IPS, SNIPS, DR, DM) of candidate policies' reward per shown item, with intervals."""
    from aisle.ope import attach_rewards, estimate
    from aisle.simulate import Request, WorldConfig, build_world, make_policy, parse_policy

    if boot < 10:
        _fail("--boot must be at least 10")
    candidates = [p.strip() for p in policy.split(",") if p.strip()]
    for name in candidates or [""]:
        try:
            parse_policy(name)
        except ValueError as exc:
            _fail(str(exc))
    paths = {n: log / f"{n}.parquet" for n in ("impressions", "events")}
    missing = [str(p) for p in [*paths.values(), log / "world.json"] if not p.exists()]
    if missing:
        _fail(f"not a simulation log folder: missing {', '.join(missing)}")
    imp, ev = pl.read_parquet(paths["impressions"]), pl.read_parquet(paths["events"])
    spec = json.loads((log / "world.json").read_text())
    k = int(spec["k"])
    try:
        logged = attach_rewards(imp, ev, reward)
    except ValueError as exc:
        _fail(str(exc))
    world = build_world(WorldConfig(**{key: v for key, v in spec.items() if key in WorldConfig.__dataclass_fields__}))
    try:
        world.reset()
        reqs = [Request(r["request_id"], r["user_id"], r["session_id"], r["timestamp"])
                for r in imp.unique("request_id", keep="first", maintain_order=True).iter_rows(named=True)]
        out: dict[str, Any] = {}
        for name in candidates:
            cand = make_policy(name, world)
            try:
                res = estimate(logged, cand.probabilities(reqs, k), confidence=confidence, n_boot=boot)
            except ValueError as exc:
                _fail(str(exc))
            out[name] = res
    finally:
        world.close()
    if json_out:
        console.print_json(json.dumps({n: r.to_dict() for n, r in out.items()}))
        return
    for name, res in out.items():
        typer.echo(res.table(name))


@experiment_app.command("report")
def experiment_report(
    log: Annotated[Path, typer.Argument(help="A folder with impressions.parquet and events.parquet (and "
                                       "items.parquet with prices, for revenue), e.g. from `aisle simulate --arms`.")],
    confidence: Annotated[float, typer.Option(help="Interval level and significance threshold (0.95: 5%).")] = 0.95,
    control: Annotated[str | None, typer.Option(help="The control arm (default: 'control', else the first by "
                                                "name).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per-arm click rate, add-to-cart rate, conversion and revenue per session, each arm against the control."""
    from aisle.experiments.analysis import report

    paths = {n: log / f"{n}.parquet" for n in ("impressions", "events")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        _fail(f"missing {', '.join(missing)}")
    prices = pl.read_parquet(log / "items.parquet") if (log / "items.parquet").exists() else None
    try:
        rep = report(pl.read_parquet(paths["impressions"]), pl.read_parquet(paths["events"]),
                     confidence=confidence, control=control, prices=prices)
    except ValueError as exc:
        _fail(str(exc))
    if json_out:
        console.print_json(json.dumps(rep.to_dict()))
    else:
        typer.echo(rep.table(), nl=False)
