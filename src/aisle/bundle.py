"""Versioned model bundles: everything serving needs, as plain files, with no pickled code.

A bundle is a folder:

    manifest.json        format version, Aisle/torch versions, created_at, data fingerprint, metrics,
                         and one entry per model (registry name + sub-folder)
    items.json           the item vocabulary (index -> item_id), shared by every model in the bundle
    users.json           the user vocabulary
    models/<name>/       each model's own `save()` output (JSON config + .npy/.safetensors arrays)
    catalog.parquet      the items table (card data for responses, attributes for rules), when known
    histories.npz        each user's last events (item index, event type code, time), the serving state
                         a known user starts from
    pipeline/            the recommendation pipeline (`aisle.pipeline`): its sources, neighbour tables,
                         combiner, and `users.npz` (each user source's precomputed top items per user)
    search/              the search engine (`SearchEngine.save`), reranker included, and its fine-tuned dense
                         encoder with ONNX exports when `aisle train --adapt` made one (`aisle.search.adapt`)
    explore/             what exploration of cold items learned (`aisle.explore.ExploreState`), when it ran
    report.json          the latest offline evaluation report, when one was run

Loading looks each model's registry name up in `aisle.models.registry.MODELS` and calls its `load`,
so a bundle can only instantiate code that ships with Aisle. The data fingerprint (a hash of the
training events) tells which data a bundle was fit on; serving compares it on reload.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from aisle import __version__
from aisle.models.base import Recommender, TrainData, Vocab
from aisle.types import EVENT_TYPES

if TYPE_CHECKING:
    from aisle.explore import ExploreState
    from aisle.models.repeat import RepeatPurchaseModel
    from aisle.pipeline import Pipeline
    from aisle.search.engine import SearchEngine

FORMAT_VERSION = 1
SERVING_PARTS = ("pipeline", "histories")
"""What `aisle serve` needs beyond the vocabularies; `aisle train` without `--model` writes them (and catalog and
search when the source has a catalog)."""


class NotServableError(ValueError):
    """The bundle cannot be served (e.g. a model bundle from `aisle train --model`); the message says how to build
    one that can. A separate type so the CLI and the reload route refuse it cleanly instead of serving trending."""


def serving_problem(path: str | Path) -> str | None:
    """Why the bundle at `path` cannot be served, or None when it can. Reads only the manifest (cheap: the CLI and
    the reload route ask before loading anything)."""
    root = Path(path)
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        return f"{root}: no bundle here (build one with `aisle train DATASPEC --out {root}`)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        return f"{manifest_path}: not a bundle manifest ({exc})"
    missing = [p for p in SERVING_PARTS if p not in manifest.get("parts", {})]
    if not missing:
        return None
    models = ", ".join(e.get("model", k) for k, e in manifest.get("models", {}).items()) or "none"
    return (f"{root} is a model bundle (models: {models}; no {' or '.join(missing)}), for evaluation and "
            f"distillation, not a serving bundle: build one with `aisle train DATASPEC --out DIR` (without --model; "
            "a [pipeline] table in --config picks its sources) and serve that")


@dataclass(frozen=True)
class Histories:
    """Per user index, the last events as CSR arrays: items (int32), event type codes (int8, `EVENT_TYPES`
    order) and timestamps (int64 microseconds), oldest first."""

    ptr: np.ndarray
    items: np.ndarray
    types: np.ndarray
    times: np.ndarray

    @classmethod
    def from_train(cls, data: TrainData, last: int = 50) -> Histories:
        codes = {t: i for i, t in enumerate(EVENT_TYPES)}
        ev = data.events.with_columns(pl.int_range(pl.len()).reverse().over("user_idx").alias("_from_end"))
        ev = ev.filter(pl.col("_from_end") < last)
        counts = np.bincount(ev["user_idx"].to_numpy(), minlength=data.n_users)
        ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
        types = ev["event_type"].replace_strict(codes, default=0, return_dtype=pl.Int8).to_numpy()
        times = ev["timestamp"].dt.epoch("us").to_numpy().astype(np.int64)
        return cls(ptr, ev["item_idx"].to_numpy().astype(np.int32), types.astype(np.int8), times)

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if user < 0 or user >= len(self.ptr) - 1:
            empty = np.zeros(0, np.int64)
            return empty, empty.astype(np.int8), empty
        a, b = self.ptr[user], self.ptr[user + 1]
        return self.items[a:b].astype(np.int64), self.types[a:b], self.times[a:b]

    def length(self, user: int) -> int:
        """How many events of `user` the bundle keeps (0 for an unknown index)."""
        return int(self.ptr[user + 1] - self.ptr[user]) if 0 <= user < len(self.ptr) - 1 else 0

    @property
    def total(self) -> int:
        return int(self.ptr[-1])

    def lengths(self) -> np.ndarray:
        """Events kept per user index."""
        return np.diff(self.ptr)

    def type_counts(self) -> np.ndarray:
        """Events kept per event type code (`EVENT_TYPES` order), over every user."""
        return np.bincount(self.types, minlength=len(EVENT_TYPES))

    def save(self, path: Path) -> None:
        np.savez(path, ptr=self.ptr, items=self.items, types=self.types, times=self.times)

    @classmethod
    def load(cls, path: Path) -> Histories:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["ptr"], z["items"], z["types"], z["times"])


def link_tree(src: Path, dst: Path) -> None:
    """`dst` as a copy of the folder `src` made of hard links (a real copy where the file system cannot link)."""
    import os
    import shutil

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=link)


def fingerprint(events: pl.DataFrame) -> str:
    """A stable hash of an event log's content (order-independent): which data a bundle was fit on."""
    if events.is_empty():
        return "empty"
    cols = [c for c in ("user_id", "item_id", "event_type", "timestamp") if c in events.columns]
    rows = events.select(cols).sort(cols).write_csv(include_header=False)
    return hashlib.sha256(rows.encode()).hexdigest()[:16]


@dataclass
class Bundle:
    items: Vocab
    users: Vocab
    models: dict[str, Recommender] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    catalog: pl.DataFrame | None = None
    histories: Histories | None = None
    pipeline: Pipeline | None = None
    user_rows: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ranked: dict[str, np.ndarray] = field(default_factory=dict)
    search: SearchEngine | None = None
    report: dict[str, Any] | None = None
    repeat: RepeatPurchaseModel | None = None  # buy it again (`aisle.models.repeat`)
    explore: ExploreState | None = None  # what exploration learned (`aisle.explore`), updated by the worker

    @property
    def version(self) -> str:
        """What a server reports as its model version: creation time + data fingerprint."""
        return f"{self.manifest.get('created_at', '?')}/{self.manifest.get('data_fingerprint', '?')}"

    def save(self, path: str | Path, *, data_fingerprint: str, metrics: dict[str, Any] | None = None,
             reuse: Path | None = None, unchanged: frozenset[str] = frozenset()) -> Path:
        """Write the bundle folder (atomically enough: a reader only trusts a complete manifest).

        `reuse`: a saved bundle this one was derived from; the parts named in `unchanged` ("search", and
        "sources/KEY" for pipeline sources) are hard-linked from it instead of written again (a refresh of a
        100,000-item bundle spent most of its time rewriting a search index and neighbour tables it had not
        touched). Files are never modified in place, so a link is as good as a copy."""
        out = Path(path)
        (out / "models").mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)  # a half-rewritten bundle is never mistaken for whole
        (out / "items.json").write_text(json.dumps(self.items.ids.tolist()))
        (out / "users.json").write_text(json.dumps(self.users.ids.tolist()))
        entries = {}
        for key, model in self.models.items():
            model.save(out / "models" / key)
            entries[key] = {"model": model.name, "path": f"models/{key}"}
        parts: dict[str, str] = {}
        if self.catalog is not None:
            self.catalog.write_parquet(out / "catalog.parquet")
            parts["catalog"] = "catalog.parquet"
        if self.histories is not None:
            self.histories.save(out / "histories.npz")
            parts["histories"] = "histories.npz"
        if self.pipeline is not None:
            linked = {k.removeprefix("sources/"): reuse / "pipeline" / "sources" / k.removeprefix("sources/")
                      for k in unchanged if k.startswith("sources/")} if reuse is not None else {}
            self.pipeline.save(out / "pipeline", linked=linked)
            np.savez(out / "pipeline" / "users.npz", **{f"{k}_{x}": a for k, (i, v) in self.user_rows.items()
                                                         for x, a in (("items", i), ("scores", v))})
            if self.ranked:
                np.savez(out / "pipeline" / "ranked.npz", **self.ranked)
            parts["pipeline"] = "pipeline"
        if self.search is not None and reuse is not None and "search" in unchanged:
            link_tree(reuse / "search", out / "search")
            parts["search"] = "search"
        elif self.search is not None:
            self.search.save(out / "search")
            parts["search"] = "search"
        if self.repeat is not None:
            self.repeat.save(out / "repeat")
            parts["repeat"] = "repeat"
        if self.explore is not None:
            self.explore.save(out / "explore")
            parts["explore"] = "explore"
        if self.report is not None:
            (out / "report.json").write_text(json.dumps(self.report, indent=2, default=str))
            parts["report"] = "report.json"
        import torch

        self.manifest = {
            "format": FORMAT_VERSION,
            "aisle": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_fingerprint": data_fingerprint,
            "n_items": len(self.items),
            "n_users": len(self.users),
            "models": entries,
            "parts": parts,
            "metrics": metrics or {},
        }
        tmp = out / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2))
        tmp.replace(out / "manifest.json")
        return out

    @staticmethod
    def read_catalog(path: str | Path) -> pl.DataFrame | None:
        """The catalog of the bundle saved at `path` alone (None when it has none), without loading its models:
        what a worker reads to learn which upserts a version published by hand carries."""
        root = Path(path)
        parts = json.loads((root / "manifest.json").read_text()).get("parts", {})
        return pl.read_parquet(root / parts["catalog"]) if "catalog" in parts else None

    def write_report(self, path: str | Path, report: dict[str, Any]) -> None:
        """Attach an offline evaluation report to a saved bundle (the manifest is rewritten atomically)."""
        root = Path(path)
        (root / "report.json").write_text(json.dumps(report, indent=2, default=str))
        self.report = report
        self.manifest.setdefault("parts", {})["report"] = "report.json"
        tmp = root / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2))
        tmp.replace(root / "manifest.json")

    @classmethod
    def load(cls, path: str | Path, *, search: bool = True, embedder: Any = None,
             require_serving: bool = False) -> Bundle:
        """Read a bundle; `search=False` skips the search index (it is the slowest part to load).
        `require_serving=True` raises NotServableError, before loading anything, for a bundle serving cannot use."""
        from aisle.models.registry import MODELS

        root = Path(path)
        manifest_path = root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{root}: not an Aisle bundle (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{root}: bundle format {manifest.get('format')} is not {FORMAT_VERSION}")
        if require_serving and (problem := serving_problem(root)) is not None:
            raise NotServableError(problem)
        models: dict[str, Recommender] = {}
        for key, entry in manifest["models"].items():
            if entry["model"] not in MODELS:
                raise ValueError(f"{root}: model {entry['model']!r} is not in this Aisle's registry")
            models[key] = MODELS[entry["model"]].load(root / entry["path"])
        items = Vocab.of(json.loads((root / "items.json").read_text()))
        users = Vocab.of(json.loads((root / "users.json").read_text()))
        bundle = cls(items=items, users=users, models=models, manifest=manifest)
        parts = manifest.get("parts", {})
        if "catalog" in parts:
            bundle.catalog = pl.read_parquet(root / parts["catalog"])
        if "histories" in parts:
            bundle.histories = Histories.load(root / parts["histories"])
        if "pipeline" in parts:
            from aisle.pipeline import Pipeline

            bundle.pipeline = Pipeline.load(root / parts["pipeline"])
            with np.load(root / parts["pipeline"] / "users.npz", allow_pickle=False) as z:
                keys = {f[: -len("_items")] for f in z.files if f.endswith("_items")}
                bundle.user_rows = {k: (z[f"{k}_items"], z[f"{k}_scores"]) for k in keys}
            if (root / parts["pipeline"] / "ranked.npz").exists():
                with np.load(root / parts["pipeline"] / "ranked.npz", allow_pickle=False) as z:
                    bundle.ranked = {k: z[k] for k in z.files}
        if "search" in parts and search:
            from aisle.search.engine import SearchEngine

            bundle.search = SearchEngine.load(root / parts["search"], embedder=embedder)
        if "report" in parts:
            bundle.report = json.loads((root / parts["report"]).read_text())
        if "explore" in parts:
            from aisle.explore import ExploreState

            bundle.explore = ExploreState.load(root / parts["explore"])
        if "repeat" in parts:
            from aisle.models.repeat import RepeatPurchaseModel

            bundle.repeat = RepeatPurchaseModel.load(root / parts["repeat"])
        return bundle


def build_serving_bundle(data: Any, config: Any = None, *, seed: int = 0, search: bool = True, dense: bool = True,
                         history_length: int = 50, progress: Any = None, adapt: Any = None,
                         previous_encoder: Path | None = None, search_memory: bool = False) -> Bundle:
    """Everything `aisle serve` needs from a Dataset: pipeline (+ per-user lists), search engine, catalog,
    histories. `manifest["metrics"]["parts"]` says what was built and how long each part took. `adapt` (an
    `aisle.search.adapt.AdaptSettings`) fine-tunes search's dense encoder on the data's own search log first;
    `previous_encoder` (the fine-tune of the bundle this one replaces: `saved_search_encoder`) serves instead when
    the log has too few pairs to adapt. `search_memory`: search remembers what shoppers engaged with after the
    log's searches (`aisle.search.memory`) when the log has at least `MIN_LOGGED_QUERIES` of them."""
    import time

    from aisle.evaluate.protocol import item_vocab
    from aisle.pipeline import Pipeline, PipelineConfig

    say = progress or (lambda _msg: None)
    parts: dict[str, dict[str, Any]] = {}
    catalog = data.items if data.items.height else None
    items = item_vocab(data.events, catalog)
    train = TrainData.from_events(data.events, items=items, catalog=catalog)
    t0 = time.perf_counter()
    say("pipeline sources and combiner")
    pipe = Pipeline(config or PipelineConfig(), seed=seed).fit(train)
    parts["pipeline"] = {"what": f"sources {', '.join(pipe.source_keys)}; ranker {pipe.ranker}",
                         "seconds": time.perf_counter() - t0, "selection_NDCG@10": pipe.selection}
    t0 = time.perf_counter()
    say("per-user candidate lists")
    rows = pipe.precompute(train)
    ranked = pipe.ranked(train, rows)
    parts["user_lists"] = {"what": f"{train.n_users:,} users: {pipe.config.per_source} items per user source, "
                                   "the final top 100", "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    say("buy-it-again model")
    from aisle.models.repeat import RepeatPurchaseModel

    repeat = RepeatPurchaseModel.from_train(train)
    parts["repeat"] = {"what": f"repeat shares and purchase cadences over {len(repeat.leaf_names)} categories",
                       "seconds": time.perf_counter() - t0}
    engine = None
    if search and catalog is not None:
        t0 = time.perf_counter()
        say("search index")
        engine, adaptation = _search_engine(data, dense, adapt, previous_encoder, memory=search_memory)
        if adaptation is not None:
            say(f"search encoder: {adaptation.reason}")
            parts["search_encoder"] = {"what": adaptation.reason, "seconds": adaptation.seconds,
                                       "adapted": adaptation.adapted, "pairs": adaptation.pairs,
                                       "encoder": adaptation.encoder, "carried": adaptation.carried}
        parts["search"] = {"what": f"{len(engine.catalog):,} items, dense={dense}, reranker="
                                   f"{'yes' if engine.reranker is not None else 'no'}, search memory="
                                   f"{f'{len(engine.memory):,} logged searches' if engine.memory else 'no'}",
                           "seconds": time.perf_counter() - t0}
    bundle = Bundle(items=items, users=train.users, catalog=catalog, histories=Histories.from_train(train,
                    history_length), pipeline=pipe, user_rows=rows, ranked=ranked, search=engine,
                    repeat=repeat)
    bundle.manifest = {"metrics": {"parts": parts, "pipeline": {"ranker": pipe.ranker, "selection": pipe.selection}}}
    return bundle


def saved_search_encoder(path: str | Path) -> Path | None:
    """The fine-tuned search encoder folder inside a saved bundle (`search/encoder`), or None when its search
    serves the packaged encoder (or it has no search): what a refit carries forward when it cannot adapt anew."""
    root = Path(path)
    try:
        search = json.loads((root / "manifest.json").read_text()).get("parts", {}).get("search")
        if search is None:
            return None
        encoder = json.loads((root / search / "manifest.json").read_text()).get("encoder")
    except (OSError, ValueError):
        return None
    return root / search / encoder if encoder else None


def _search_engine(data: Any, dense: bool, adapt: Any = None, previous: Path | None = None, *,
                   memory: bool = False) -> tuple[SearchEngine, Any]:
    """The search engine and, when `adapt` asks for it, what adapting its encoder did (`Adaptation`)."""
    from aisle.search import evaluate as ev
    from aisle.search.embed import Embedder, default_cache_dir
    from aisle.search.engine import SearchEngine

    purchases = data.events.filter(pl.col("event_type") == "purchase").group_by("item_id").len()
    engine = SearchEngine.build(data.items, dense=dense, embedder=Embedder(default_cache_dir()) if dense else None,
                                popularity=dict(purchases.iter_rows()))
    judgments = ev.judgments_from_events(data.events)
    adaptation = None
    if adapt is not None:
        from aisle.search.adapt import adapt_engine

        engine, adaptation = adapt_engine(engine, judgments, adapt, previous=previous)
    if judgments.height:
        from aisle.search.memory import MIN_LOGGED_QUERIES

        judged = ev.judged_queries(judgments, engine)
        memories, logged = None, None
        if memory and engine.dense is not None and len(judged) >= MIN_LOGGED_QUERIES:
            # the search memory of the store's logged searches; the reranker learns from cross-fitted memories,
            # so each logged query's features come from the OTHER folds' searches, as a new query's would
            memories, logged = ev.cross_fitted_memories(engine, judged, np.arange(len(judged)))
        prep = ev.prepare(engine, [j.query for j in judged], memories=memories)
        if sum(len(p.features) for p in prep) >= 100:
            engine.reranker = ev.fit(prep, ev.head_gains(prep, judged), list(range(len(prep))))
            engine.memory = logged
    return engine, adaptation
