"""The bundle registry: versioned serving bundles in one folder, a `current` pointer every server follows.

Layout (a local disk or a volume every replica mounts):

    ROOT/
      current              the serving version's name, one line; replaced atomically (write + fsync + rename)
      versions/VERSION/    a whole bundle as `Bundle.save` writes it, plus decision.json (why it was or was not
                           promoted: the gate's scores and checks); a version appears only once complete (it is
                           written under versions/.incoming-* and renamed)
      history.jsonl        one line per publish, promotion, refusal and rollback: the audit trail
      .lock                serialises writers (the worker, a person running `aisle bundles`)

Why a pointer file and not a symlink: it survives copies between volumes and object-store syncs, and a reader
needs one read to know the version. Why keep refused candidates: a person can inspect or force-promote one, and
`aisle bundles list` shows the decision with both scores. Servers are told of a change through Redis pub/sub on
`BUNDLE_CHANNEL` (when they share a Redis) and poll `current` otherwise; either way they load the named version in
the background and swap it in atomically (`aisle.serve.services`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aisle.filelock import file_lock

#: The Redis pub/sub channel servers listen on: a JSON message {"action": "promote"|"reload", "version": ...}.
BUNDLE_CHANNEL = "aisle:bundle"
DECISION_FILE = "decision.json"


class RegistryError(ValueError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to, not a registry)."""


@dataclass(frozen=True)
class Decision:
    """Why a candidate bundle was (or was not) promoted. `candidate`/`serving` hold the gate's metrics for each
    (e.g. {"ndcg@10": 0.0412, "users": 812}); `checks` the health checks by name -> passed and detail."""

    kind: str  # refresh | refit | manual
    promoted: bool
    reason: str
    candidate: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)  # watermark, events read, fit seconds, ...

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "promoted": self.promoted, "reason": self.reason, "candidate": self.candidate,
                "serving": self.serving, "checks": self.checks, "at": self.at, **({"extra": self.extra}
                                                                                if self.extra else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        return cls(kind=str(d.get("kind", "?")), promoted=bool(d.get("promoted")), reason=str(d.get("reason", "")),
                   candidate=dict(d.get("candidate") or {}), serving=dict(d.get("serving") or {}),
                   checks=dict(d.get("checks") or {}), at=str(d.get("at", "")), extra=dict(d.get("extra") or {}))


@dataclass(frozen=True)
class VersionInfo:
    version: str
    path: Path
    current: bool
    decision: Decision | None


def is_registry(path: str | Path) -> bool:
    """True when `path` is a registry root rather than one bundle folder."""
    p = Path(path)
    return (p / "versions").is_dir() or (p / "current").is_file()


def resolve_bundle(path: str | Path) -> Path:
    """The bundle folder to serve: a registry's current version, or `path` itself when it is a bundle."""
    p = Path(path)
    if not is_registry(p):
        return p
    cur = Registry(p).current_path()
    if cur is None:
        raise RegistryError(f"the registry {p} has no current version yet (publish one: aisle bundles publish)")
    return cur


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Registry:
    """Versioned bundle folders under `root` with an atomically replaced `current` pointer; keeps the newest `keep`
    versions (never the current one, nor the one a rollback would return to)."""

    def __init__(self, root: str | Path, *, keep: int = 5) -> None:
        if keep < 2:
            raise RegistryError("a registry keeps at least 2 versions (the current one and the rollback target)")
        self.root = Path(root)
        self.keep = keep
        self.versions_dir = self.root / "versions"

    # ---- reading ---------------------------------------------------------------------------------------------

    def current(self) -> str | None:
        """The serving version's name, or None before the first promotion."""
        try:
            name = (self.root / "current").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current_path(self) -> Path | None:
        name = self.current()
        return None if name is None else self.versions_dir / name

    def path(self, version: str) -> Path:
        p = self.versions_dir / version
        if version.startswith(".") or "/" in version or not (p / "manifest.json").is_file():
            raise RegistryError(f"no complete bundle version {version!r} in {self.root} (see: aisle bundles list)")
        return p

    def decision(self, version: str) -> Decision | None:
        try:
            return Decision.from_dict(json.loads((self.versions_dir / version / DECISION_FILE).read_text()))
        except FileNotFoundError:
            return None

    def list(self) -> list[VersionInfo]:
        """Every complete version, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        cur = self.current()
        names = sorted(p.name for p in self.versions_dir.iterdir()
                       if not p.name.startswith(".") and (p / "manifest.json").is_file())
        return [VersionInfo(n, self.versions_dir / n, n == cur, self.decision(n)) for n in names]

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def chain(self) -> list[str]:
        """The promoted versions in the order they became current, rollbacks undone: the last is current and the
        one before it is what `rollback` returns to."""
        out: list[str] = []
        for rec in self.history():
            if rec.get("action") == "promote":
                previous = rec.get("previous")
                if previous and (not out or out[-1] != previous):
                    # a promotion whose record was lost: its writer was killed after replacing `current` and
                    # before logging it; the next promotion names it as the version it replaced
                    out = [v for v in out if v != previous] + [previous]
                out = [v for v in out if v != rec["version"]] + [rec["version"]]
            elif rec.get("action") == "rollback" and out:
                out.pop()
        return out

    # ---- writing ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ".lock"):
            yield

    def new_version(self, kind: str) -> str:
        """A unique, time-sortable version name, e.g. 20261206T101502.123456Z-refit."""
        return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{kind}"

    def incoming(self, version: str) -> Path:
        """Where to write a bundle before `publish` makes it a version (same file system: the rename is atomic)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        return self.versions_dir / f".incoming-{version}"

    def publish(self, bundle_dir: str | Path, decision: Decision, *, version: str | None = None) -> str:
        """Make the complete bundle at `bundle_dir` a version (moved when it is this registry's `incoming` folder,
        copied otherwise), record `decision`, and make it current when the decision promotes it."""
        src = Path(bundle_dir)
        if not (src / "manifest.json").is_file():
            raise RegistryError(f"{src} is not a complete bundle (no manifest.json)")
        version = version or self.new_version(decision.kind)
        with self._locked():
            dest = self.versions_dir / version
            if dest.exists():
                raise RegistryError(f"version {version} already exists in {self.root}")
            tmp = self.incoming(version)
            if src.resolve() != tmp.resolve():
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(src, tmp)
            (tmp / DECISION_FILE).write_text(json.dumps(decision.to_dict(), indent=2, default=str))
            _fsync_dir(tmp)
            tmp.rename(dest)
            _fsync_dir(self.versions_dir)
            self._log({"action": "publish", "version": version, "promoted": decision.promoted,
                       "reason": decision.reason})
            if decision.promoted:
                self._set_current(version, "promote")
            self._prune()
        return version

    def promote(self, version: str, *, reason: str = "promoted by hand") -> None:
        """Make an existing version current (a person overriding the gate, or re-promoting an older one)."""
        with self._locked():
            self.path(version)
            self._set_current(version, "promote", reason=reason)

    def rollback(self) -> str:
        """Make the previously promoted version current again; returns it."""
        with self._locked():
            chain = self.chain()
            if len(chain) < 2:
                raise RegistryError(f"nothing to roll back to in {self.root}: one promoted version or none")
            back = chain[-2]
            self.path(back)
            self._set_current(back, "rollback", reason=f"rolled back from {chain[-1]}")
            return back

    def _set_current(self, version: str, action: str, *, reason: str = "") -> None:
        previous = self.current()
        tmp = self.root / ".current.tmp"
        with tmp.open("w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.root / "current")
        _fsync_dir(self.root)
        self._log({"action": action, "version": version, "previous": previous, **({"reason": reason}
                                                                                  if reason else {})})

    def _log(self, record: dict[str, Any]) -> None:
        record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **record}
        with (self.root / "history.jsonl").open("a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _prune(self) -> None:
        """Keep the newest `keep` versions, the current one and the rollback target."""
        chain = self.chain()
        protected = set(chain[-2:]) | ({self.current()} - {None})
        # the fit a served version grew from by refreshes (`aisle worker`'s gate compares refits with it)
        protected |= {str(d.extra["refit"]) for v in protected if (d := self.decision(v)) is not None
                      and d.extra.get("refit")}
        names = [v.version for v in self.list()]
        for name in names[:-self.keep] if len(names) > self.keep else []:
            if name not in protected:
                shutil.rmtree(self.versions_dir / name, ignore_errors=True)

    def clean_incoming(self) -> int:
        """Delete half-written bundles left by a writer that died; call it only while holding the training lease
        (no other writer is then writing one). Returns how many were removed."""
        with self._locked():
            stale = list(self.versions_dir.glob(".incoming-*"))
            for p in stale:
                shutil.rmtree(p, ignore_errors=True)
            return len(stale)


def notice(action: str, version: str | None, **extra: Any) -> str:
    """The message on `BUNDLE_CHANNEL`: {"action": "promote"|"reload", "version": ..., **extra}. `extra` carries
    what a server adds when it relays a reload: `sender` (so it does not act on its own notice twice) and `path`
    (a plain bundle folder to load)."""
    return json.dumps({"action": action, "version": version, **{k: v for k, v in extra.items() if v is not None}})


def notify(redis_url: str, action: str, version: str | None, **extra: Any) -> int:
    """Tell every server sharing `redis_url` to follow the registry now; returns how many listeners got it."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return int(client.publish(BUNDLE_CHANNEL, notice(action, version, **extra)))
    finally:
        client.close()


__all__ = ["BUNDLE_CHANNEL", "Decision", "Registry", "RegistryError", "VersionInfo", "is_registry", "notice", "notify",
           "resolve_bundle"]
