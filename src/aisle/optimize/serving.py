"""What `aisle serve` builds from the `[inference]` settings: optimised user sources and the query encoder.

`optimize_pipeline` replaces each full-catalog user source of a loaded pipeline (the sequential model, MF) by an
`aisle.index.Retriever`: the configured encoder backend for sequential models (ONNX Runtime by default) and,
by catalog size, exact scoring or the configured ANN index. The pipeline then asks it for its top
`per_source` items instead of scoring the whole catalog (`Pipeline.candidates` uses `top_n` when a source has
one). ONNX files and indexes are cached on disk under names derived from the weights and the index settings,
so a restart or a second worker reuses them; a source that cannot be optimised (an export that fails, a model
without vectors) keeps its own scoring, with a warning in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from aisle.config import InferenceConfig
from aisle.index import IndexSpec, ItemIndex, Retriever, as_vector_model, choose_index

log = logging.getLogger("aisle.optimize")


def default_cache_dir() -> Path:
    base = os.environ.get("AISLE_CACHE")
    return Path(base) / "optimize" if base else Path.home() / ".cache" / "aisle" / "optimize"


def index_specs(cfg: InferenceConfig) -> tuple[IndexSpec, IndexSpec]:
    """(exact, ann) index settings of `cfg`."""
    return (IndexSpec(kind=cfg.item_table),
            IndexSpec(kind=cfg.ann, m=cfg.hnsw_m, ef_search=cfg.ef_search, nprobe=cfg.nprobe, refine=cfg.refine))


def cached_index(vectors: np.ndarray, spec: IndexSpec, folder: Path) -> ItemIndex:
    """The index of `vectors` under `spec`, loaded from `folder` when built before (keyed by content + spec)."""
    x = np.ascontiguousarray(vectors, np.float32)
    build = {k: v for k, v in asdict(spec).items() if k not in ("ef_search", "nprobe", "refine")}
    h = hashlib.sha1(json.dumps(build, sort_keys=True).encode() + str(x.shape).encode())
    h.update(x.tobytes())
    where = Path(folder) / f"index-{spec.kind}-{h.hexdigest()[:16]}"
    if (where / "index.json").exists():
        try:
            return ItemIndex.load(where).with_search(ef_search=spec.ef_search, nprobe=spec.nprobe,
                                                     refine=spec.refine)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("ignoring unreadable cached index %s: %s", where, exc)
    index = ItemIndex.build(x, spec)
    try:
        index.save(where)
    except OSError as exc:
        log.warning("could not cache the index in %s: %s", where, exc)
    return index


def optimize_source(model: Any, cfg: InferenceConfig, folder: Path, *, depth: int) -> Retriever | None:
    """A Retriever serving `model` under `cfg`, or None when it has no user/item vectors."""
    from aisle.models.sequential import SequentialRecommender
    from aisle.optimize.encoders import make_encoder

    if isinstance(model, SequentialRecommender):
        vm: Any = make_encoder(model, cfg.backend, folder=folder, threads=1)
    else:
        vm = as_vector_model(model)
        if vm is None:
            return None
    items = np.asarray(vm.item_vectors(), np.float32)
    exact, ann = index_specs(cfg)
    spec = choose_index(len(items), min_items=cfg.ann_min_items, exact=exact, ann=ann)
    # candidates keep the history: the business rules decide what a shopper has seen (exclude_seen)
    return Retriever(vm, cached_index(items, spec, folder), depth=depth, exclude_history=False, threads=1)


def optimize_pipeline(pipeline: Any, cfg: InferenceConfig) -> Any:
    """A copy of `pipeline` whose full-catalog sources answer from Retrievers where possible (see the module
    docstring); the loaded pipeline itself is left as it was."""
    if pipeline is None or not cfg.enabled:
        return pipeline
    folder = Path(cfg.cache_dir) if cfg.cache_dir is not None else default_cache_dir()
    sources = []
    for source in pipeline.sources:
        retriever = None
        if source.per_user:
            try:
                retriever = optimize_source(source.model, cfg, folder, depth=pipeline.config.per_source)
            except Exception as exc:  # serving must start: the model's own scoring still works
                log.warning("inference optimisation of source %s failed, serving it unoptimised: %s: %s",
                            source.key, type(exc).__name__, exc)
        if retriever is not None:
            log.info("source %s: %s encoder, %s index over %d items", source.key,
                     getattr(retriever.model, "backend", "model"), retriever.index.spec.kind, retriever.n_items)
        sources.append(source if retriever is None else source.with_model(retriever))
    return pipeline.with_sources(sources)


def indexed_online(pipeline: Any) -> bool:
    """True when every full-catalog source of `pipeline` is served from an ANN index (cheap enough to score live
    sessions on any catalog size)."""
    if pipeline is None:
        return False
    models = [s.model for s in pipeline.sources if s.per_user]
    return bool(models) and all(isinstance(m, Retriever) and m.index.spec.approximate for m in models)


def query_embedder(cfg: InferenceConfig, cache_dir: Path | None = None) -> Any:
    """The search embedder for `cfg.query_encoder` (`torch`: the plain `Embedder`)."""
    from aisle.search.embed import Embedder
    from aisle.search.embed import default_cache_dir as embed_cache

    if cfg.query_encoder == "torch" or not cfg.enabled:
        return Embedder(cache_dir or embed_cache())
    from aisle.optimize.textenc import OnnxEmbedder

    folder = Path(cfg.cache_dir) if cfg.cache_dir is not None else default_cache_dir()
    return OnnxEmbedder(cache_dir or embed_cache(), int8=cfg.query_encoder == "onnx-int8", onnx_dir=folder)


def describe(pipeline: Any) -> dict[str, str]:
    """{source key: "backend + index kind"} for the full-catalog sources (what /api/stats can show)."""
    if pipeline is None:
        return {}
    return {s.key: (f"{getattr(s.model.model, 'backend', 'vectors')} + {s.model.index.spec.kind}"
                    if isinstance(s.model, Retriever) else "model") for s in pipeline.sources if s.per_user}


__all__ = ["cached_index", "default_cache_dir", "describe", "index_specs", "indexed_online", "optimize_pipeline",
           "optimize_source", "query_embedder"]
