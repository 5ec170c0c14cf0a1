"""Policies: what decides the list a shopper is shown. One interface for the served pipeline, baselines, the
oracle, and stochastic policies that say how likely each shown item was (what off-policy evaluation needs).

A policy answers a batch of requests with one `Slate` each. `propensities` is the probability that the policy
put that item at that position (None: a deterministic policy, 1.0 each). `probabilities` gives, for requests
taken from a log, the policy's probability of every item it could show at every position: the candidate side of
off-policy evaluation (`aisle.ope`). `observe` lets a learning policy (a bandit, a ranker learned from
impressions) see what happened after each batch; the fixed policies here ignore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from aisle.simulate.world import World


@dataclass(frozen=True, slots=True)
class Request:
    """One list to fill: who asks, in which session, when."""

    request_id: str
    user_id: str
    session_id: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Slate:
    items: tuple[str, ...]
    scores: tuple[float, ...] | None = None
    propensities: tuple[float, ...] | None = None  # None: deterministic


PROBABILITY_SCHEMA: dict[str, pl.DataType] = {"request_id": pl.String(), "position": pl.Int32(),
                                              "item_id": pl.String(), "probability": pl.Float64()}


@runtime_checkable
class Policy(Protocol):
    name: str

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]: ...

    def probabilities(self, requests: Sequence[Request], k: int) -> pl.DataFrame: ...

    def observe(self, impressions: pl.DataFrame, events: pl.DataFrame) -> None: ...


class DeterministicPolicy:
    """Base of the policies whose list is a function of the request: probability 1 for what `rank` shows."""

    name = "deterministic"

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        raise NotImplementedError

    def probabilities(self, requests: Sequence[Request], k: int) -> pl.DataFrame:
        slates = self.rank(requests, k)
        rows = [(r.request_id, p + 1, item, 1.0) for r, s in zip(requests, slates, strict=True)
                for p, item in enumerate(s.items)]
        return pl.DataFrame(rows, schema=PROBABILITY_SCHEMA, orient="row")

    def observe(self, impressions: pl.DataFrame, events: pl.DataFrame) -> None:
        return None


def served_slates(world: World, requests: Sequence[Request], k: int, *, propensities: bool) -> list[Slate]:
    """What the app's "recommended for you" answers for each request, as slates (with the propensities it logged
    when the list may explore; None, i.e. deterministic, otherwise)."""
    out = []
    for r in requests:
        resp = world.client.get(f"/users/{r.user_id}/recommendations", params={"k": k})
        if resp.status_code != 200:
            raise RuntimeError(f"recommendations for {r.user_id} answered {resp.status_code}: {resp.text[:300]}")
        items = resp.json()["items"]
        out.append(Slate(tuple(i["item_id"] for i in items), tuple(float(i.get("score") or 0.0) for i in items),
                         tuple(float(i.get("propensity", 1.0)) for i in items) if propensities else None))
    return out


class ServedPolicy(DeterministicPolicy):
    """The current pipeline, asked through the API: `GET /users/{id}/recommendations`, rules and all."""

    name = "pipeline"

    def __init__(self, world: World) -> None:
        self.world = world

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        return served_slates(self.world, requests, k, propensities=False)


class ExplorePolicy:
    """The served pipeline with exploration on (`aisle.explore`): the app explores cold items on `share` of the
    lists with `bandit` (thompson or linucb), and every `update_every` lists the state learns from what happened,
    as `aisle worker` refreshes it in a fleet. Its propensities are the ones the API logs."""

    def __init__(self, world: World, bandit: str = "linucb", share: float = 1.0, update_every: int = 20,
                 seed: int = 0) -> None:
        from aisle.config import ExploreConfig

        self.world, self.update_every = world, update_every
        self.explore = ExploreConfig(enabled=True, policy=bandit, share=share, seed=seed)  # type: ignore[arg-type]
        self.rules: Any = None  # the app's [rules] (an aisle.config.RulesConfig), when not the default ones
        self.name = f"explore:{bandit}" + (f":{share:g}" if share != 1.0 else "")
        self._imp: list[pl.DataFrame] = []
        self._ev: list[pl.DataFrame] = []
        self._lists = 0

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        return served_slates(self.world, requests, k, propensities=True)

    def probabilities(self, requests: Sequence[Request], k: int) -> pl.DataFrame:
        raise ValueError("an exploring policy's probabilities depend on its state at each request; "
                                  "evaluate it on-policy (aisle simulate), not from another policy's log")

    def observe(self, impressions: pl.DataFrame, events: pl.DataFrame) -> None:
        self._imp.append(impressions)
        self._ev.append(events)
        self._lists += impressions["request_id"].n_unique()
        if self._lists < self.update_every:
            return
        services = self.world.services
        state = services.runtime.learn(pl.concat(self._imp), pl.concat(self._ev))
        services.set_exploration(state)
        self._imp, self._ev, self._lists = [], [], 0


class TrendingPolicy(DeterministicPolicy):
    """What `GET /trending` serves: the same list for everyone, updated by the events the API receives."""

    name = "trending"

    def __init__(self, world: World) -> None:
        self.world = world

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        resp = self.world.client.get("/trending", params={"k": k})
        if resp.status_code != 200:
            raise RuntimeError(f"trending answered {resp.status_code}: {resp.text[:300]}")
        items = resp.json()["items"]
        slate = Slate(tuple(i["item_id"] for i in items), tuple(float(i.get("score") or 0.0) for i in items))
        return [slate] * len(requests)


class OraclePolicy(DeterministicPolicy):
    """The best list there is: the items each shopper truly wants most, among those on sale now."""

    name = "oracle"

    def __init__(self, world: World) -> None:
        self.world = world

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        w = self.world
        items = np.array([w.item_row[i] for i in w.available], dtype=np.int64)
        users = np.array([w.user_row[r.user_id] for r in requests], dtype=np.int64)
        util = w.tastes.affinity(users[:, None], items[None, :])
        top = np.argsort(-util, axis=1, kind="stable")[:, :k]
        return [Slate(tuple(w.available[j] for j in row), tuple(float(u[j]) for j in row))
                for row, u in zip(top, util, strict=True)]


class RandomPolicy:
    """k distinct items drawn uniformly from those on sale: each item is at a given position with 1/n."""

    name = "random"

    def __init__(self, world: World, seed: int = 0) -> None:
        self.world = world
        self.rng = np.random.default_rng(seed)

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        pool = self.world.available
        n = len(pool)
        out = []
        for _ in requests:
            pick = self.rng.choice(n, size=min(k, n), replace=False)
            out.append(Slate(tuple(pool[j] for j in pick), None, (1.0 / n,) * len(pick)))
        return out

    def probabilities(self, requests: Sequence[Request], k: int) -> pl.DataFrame:
        pool = self.world.available
        n, kk = len(pool), min(k, len(self.world.available))
        return pl.DataFrame({"request_id": [r.request_id for r in requests]}).join(
            pl.DataFrame({"position": pl.int_range(1, kk + 1, eager=True, dtype=pl.Int32)}), how="cross").join(
            pl.DataFrame({"item_id": pool}), how="cross").with_columns(pl.lit(1.0 / n).alias("probability"))

    def observe(self, impressions: pl.DataFrame, events: pl.DataFrame) -> None:
        return None


class EpsilonPolicy:
    """A stochastic logging policy: the `base` policy's list, or, with probability `epsilon`, a uniformly random
    one. Every shown item carries its exact propensity, (1 - epsilon) [base put it there] + epsilon / n, which is
    what lets off-policy evaluation score any other policy from its log."""

    def __init__(self, base: Policy, world: World, epsilon: float = 0.5, seed: int = 0) -> None:
        if not 0 < epsilon <= 1:
            raise ValueError(f"epsilon must be in (0, 1], not {epsilon}")
        self.base, self.world, self.epsilon = base, world, epsilon
        self.random = RandomPolicy(world, seed)
        self.rng = np.random.default_rng(seed + 1)
        self.name = f"epsilon({base.name},{epsilon:g})"

    def rank(self, requests: Sequence[Request], k: int) -> list[Slate]:
        base = self.base.rank(requests, k)
        rand = self.random.rank(requests, k)
        n = len(self.world.available)
        explore = self.rng.random(len(requests)) < self.epsilon
        out = []
        for b, r, e in zip(base, rand, explore, strict=True):
            shown = r.items if e else b.items
            p = tuple((1 - self.epsilon) * (i < len(b.items) and b.items[i] == item) + self.epsilon / n
                      for i, item in enumerate(shown))
            out.append(Slate(shown, None, p))
        return out

    def probabilities(self, requests: Sequence[Request], k: int) -> pl.DataFrame:
        base = self.base.probabilities(requests, k).with_columns(pl.col("probability") * (1 - self.epsilon))
        rand = self.random.probabilities(requests, k).with_columns(pl.col("probability") * self.epsilon)
        return pl.concat([base, rand]).group_by("request_id", "position", "item_id").agg(pl.col("probability").sum())

    def observe(self, impressions: pl.DataFrame, events: pl.DataFrame) -> None:
        self.base.observe(impressions, events)


POLICY_NAMES: tuple[str, ...] = ("pipeline", "trending", "random", "oracle")
BANDITS: tuple[str, ...] = ("thompson", "linucb")


def parse_policy(name: str) -> tuple[str, float | None]:
    """(base name, epsilon or None) of a policy name; a ValueError that says what is accepted otherwise. Cheap:
    commands check their names with it before they build a world."""
    base, eps = name, None
    if name.startswith("explore:"):
        parts = name.split(":")
        if len(parts) not in (2, 3) or parts[1] not in BANDITS:
            raise ValueError(f"bad policy {name!r}: write explore:BANDIT[:SHARE] with BANDIT one of "
                             f"{', '.join(BANDITS)}, e.g. explore:linucb or explore:thompson:0.2")
        try:
            share = float(parts[2]) if len(parts) == 3 else 1.0
        except ValueError:
            raise ValueError(f"bad policy {name!r}: {parts[2]!r} is not a number") from None
        if not 0 < share <= 1:
            raise ValueError(f"bad policy {name!r}: the share must be in (0, 1]")
        return name, share
    if name.startswith("epsilon:"):
        parts = name.split(":")
        if len(parts) != 3:
            raise ValueError(f"bad policy {name!r}: write epsilon:BASE:EPSILON, e.g. epsilon:pipeline:0.3")
        try:
            eps = float(parts[2])
        except ValueError:
            raise ValueError(f"bad policy {name!r}: {parts[2]!r} is not a number") from None
        if not 0 < eps <= 1:
            raise ValueError(f"bad policy {name!r}: epsilon must be in (0, 1]")
        base = parts[1]
    if base not in POLICY_NAMES:
        raise ValueError(f"unknown policy {base!r}; accepted: {', '.join(POLICY_NAMES)}, epsilon:BASE:EPSILON, "
                         "explore:BANDIT[:SHARE]")
    return base, eps


def make_policy(name: str, world: World, *, seed: int = 0) -> Policy:
    """A policy by name: pipeline, trending, random, oracle, epsilon:BASE:EPS (e.g. epsilon:pipeline:0.3), or
    explore:BANDIT[:SHARE] (the pipeline exploring cold items, e.g. explore:linucb or explore:thompson:0.2)."""
    base, eps = parse_policy(name)
    if base.startswith("explore:"):
        return ExplorePolicy(world, base.split(":")[1], eps if eps is not None else 1.0, seed=seed)
    if eps is not None:
        return EpsilonPolicy(make_policy(base, world, seed=seed), world, eps, seed)
    if base == "random":
        return RandomPolicy(world, seed)
    return {"pipeline": ServedPolicy, "trending": TrendingPolicy, "oracle": OraclePolicy}[base](world)
