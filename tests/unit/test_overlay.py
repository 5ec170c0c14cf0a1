"""Overlay maps and lists (`aisle.overlay`): every version reads as the dict or list it stands for, and building
the next one never changes what an older version reads (requests still running on it)."""

from __future__ import annotations

import random

from aisle.overlay import Column, Layered


def test_layered_versions_read_as_dicts_and_older_ones_never_change() -> None:
    rng = random.Random(0)
    truth: dict[int, int] = {k: k * 10 for k in range(2000)}
    version = Layered(truth)
    history = [(version, dict(truth))]
    for step in range(400):  # enough changes for several merges into a new base
        sets = {rng.randrange(3000): step for _ in range(rng.randrange(1, 20))}
        gone = [rng.randrange(3000) for _ in range(rng.randrange(0, 5))]
        version = version.with_items(sets, remove=gone)
        truth = {**truth, **sets}
        for k in gone:
            truth.pop(k, None)
        history.append((version, dict(truth)))
    for v, want in history[:: 37] + history[-3:]:
        assert len(v) == len(want) and bool(v) == bool(want)
        assert dict(v) == want and sorted(v) == sorted(want)  # each key once
        for k in range(0, 3000, 7):
            assert (k in v) == (k in want)
            assert v.get(k, -1) == want.get(k, -1)


def test_column_versions_read_as_lists_and_older_ones_never_change() -> None:
    rng = random.Random(1)
    truth = [f"t{i}" for i in range(1000)]
    version: Column[str | None] = Column(truth)
    history = [(version, list(truth))]
    for step in range(300):
        n = len(truth)
        rows = rng.sample(range(n), 5) + list(range(n, n + rng.randrange(0, 4)))
        values = [f"s{step}-{r}" for r in rows]
        version = version.with_values(rows, values, None)
        truth = truth + [None] * (len(version) - len(truth))
        for r, v in zip(rows, values, strict=True):
            truth[r] = v
        history.append((version, list(truth)))
    branch = history[100][0].with_values([5, len(history[100][1])], ["x", "y"], None)  # an older version grows
    assert branch[5] == "x" and branch[-1] == "y" and len(branch) == len(history[100][1]) + 1
    for v, want in history[:: 23] + history[-3:]:
        assert len(v) == len(want) and list(v) == want and v.tolist() == want
        assert [v[i] for i in range(len(v))] == want and v[-1] == want[-1] and v[3:9] == want[3:9]
