"""`aisle search-eval`: measure search on graded relevance judgments, plain BM25 and Aisle side by side.

The protocol (whole-catalog ranking, linear-gain NDCG@10, Recall@100 of items rated >= 2, query-grouped
cross-validation of the reranker) is documented in `aisle.search.evaluate`. Heavy imports happen inside the
command so `aisle --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aisle.cli.console import error_line

console = Console()
err = Console(stderr=True)


def _read(spec: str, option: str) -> Any:
    from aisle.data.readers import read_dataspec
    from aisle.data.validation import DataError

    try:
        data = read_dataspec(spec)
    except (DataError, ValueError, FileNotFoundError, OSError) as exc:
        err.print(error_line(f"{option}: {exc}"))
        raise typer.Exit(2) from None
    if "judgments" not in data.extras and option != "--catalog":
        err.print(error_line(f"{option}: {spec} has no relevance judgments (e.g. use the homedepot format)"))
        raise typer.Exit(2)
    return data


def search_eval(
    dataspec: Annotated[str, typer.Argument(help="Judged queries, e.g. homedepot:PATH/train_dev.csv.gz.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here ('-': stdout).")]
    = None,
    train: Annotated[str | None, typer.Option(help="Fit the reranker on this labelled source (over its own "
                                              "products) and score every query of DATASPEC with it.")] = None,
    catalog: Annotated[str | None, typer.Option(help="Rank this source's items instead of DATASPEC's products.")]
    = None,
    protocol: Annotated[str, typer.Option(help="holdout: fit everything on 80% of the queries and score the fixed "
                                          "other 20%; cv: query-grouped cross-validation of the reranker over "
                                          "all queries (the older protocol).")] = "holdout",
    folds: Annotated[int, typer.Option(help="Folds of the cv protocol (and of --cv-row).")] = 5,
    cv_row: Annotated[bool, typer.Option("--cv-row", help="holdout: also score the reranker by --folds-fold "
                                         "cross-validation over all queries, as a row for continuity.")] = False,
    tune_fusion: Annotated[bool, typer.Option(help="Tune the fusion (RRF k, dense weight, list depth) on the "
                                              "fitted queries.")] = True,
    fusion_recall_slack: Annotated[float, typer.Option(help="The fusion tuning keeps the settings whose Recall@"
                                                       "rerank-depth is within this of the best and picks the best "
                                                       "NDCG@10 among them (0: the most recall).")] = 0.0,
    tune_reranker: Annotated[bool, typer.Option("--tune-reranker", help="Choose the reranker's hyperparameters "
                                                "by 3-fold CV on the fitted queries (slow).")] = False,
    rerank_depth: Annotated[int | None, typer.Option(help="Fused candidates the reranker reorders "
                                                     "(default: the engine's).")] = None,
    sample_queries: Annotated[int | None, typer.Option(help="Evaluate a random subset of this many queries.")]
    = None,
    catalog_size: Annotated[int | None, typer.Option(help="Restrict the catalog to the evaluated queries' judged "
                                                     "products plus random others, this many in all.")] = None,
    dense: Annotated[bool, typer.Option(help="Use the MiniLM dense retriever.")] = True,
    encoder: Annotated[Path | None, typer.Option(help="A fine-tuned encoder folder (`aisle.search.adapt`) for the "
                                                 "dense side instead of the packaged MiniLM; fit it on the "
                                                 "holdout protocol's 80% only.")] = None,
    tune_queries: Annotated[int, typer.Option(help="Fitted queries the fusion is tuned on (a seeded sample; "
                                              "0: all).")] = 2000,
    cache: Annotated[Path | None, typer.Option(help="Embedding cache folder (default $AISLE_CACHE or "
                                               "~/.cache/aisle).")] = None,
    save: Annotated[Path | None, typer.Option(help="Also fit the reranker on all queries and save the search "
                                              "index here.")] = None,
    memory: Annotated[bool, typer.Option(help="Also score Aisle with a search memory (`aisle.search.memory`): the "
                                         "fitted queries' judged products found through similar queries, as a "
                                         "retriever and reranker features, cross-fitted (holdout protocol, dense "
                                         "side), beside an 'aisle-no-memory' row. Off by default: on a judgment "
                                         "file whose catalog is the judged products (Home Depot) most of its "
                                         "gain is an artifact of that (benchmarks/RESULTS.md).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for --sample-queries / --catalog-size.")] = 0,
) -> None:
    """Rank the whole catalog for every judged query; print NDCG@10 / Recall@100/@200 of bm25, hybrid and Aisle,
    per retriever and per query type."""
    import numpy as np
    import polars as pl

    from aisle.search import evaluate as ev
    from aisle.search import tune
    from aisle.search.embed import Embedder, default_cache_dir
    from aisle.search.engine import SearchEngine

    if protocol not in ("holdout", "cv"):
        raise typer.BadParameter("expected holdout or cv", param_hint="--protocol")
    if folds < 2 and (train is None and (protocol == "cv" or cv_row)):
        raise typer.BadParameter("need at least 2 folds (or --train)", param_hint="--folds")
    if fusion_recall_slack < 0:
        raise typer.BadParameter("must be at least 0", param_hint="--fusion-recall-slack")
    if rerank_depth is not None and rerank_depth < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--rerank-depth")
    t0 = time.perf_counter()
    data = _read(dataspec, "DATASPEC")
    judgments: pl.DataFrame = data.extras["judgments"].filter(pl.col("relevance").is_not_null())
    items: pl.DataFrame = _read(catalog, "--catalog").items if catalog else data.items
    rng = np.random.default_rng(seed)
    if sample_queries is not None:
        qs = judgments["query"].unique().sort()
        pick = rng.choice(len(qs), size=min(sample_queries, len(qs)), replace=False)
        judgments = judgments.filter(pl.col("query").is_in(qs.gather(np.sort(pick)).implode()))
    if catalog_size is not None:
        judged_ids = set(judgments["item_id"].to_list())
        others = items.filter(~pl.col("item_id").is_in(list(judged_ids)))
        extra = max(0, catalog_size - len(judged_ids))
        pick = np.sort(rng.choice(others.height, size=min(extra, others.height), replace=False))
        items = pl.concat([items.filter(pl.col("item_id").is_in(list(judged_ids))), others[pick]])
    try:
        embedder = Embedder(cache or default_cache_dir(), model_path=encoder) if dense else None
    except ValueError as exc:
        err.print(error_line(f"--encoder: {exc}"))
        raise typer.Exit(2) from None

    def progress(stage: str, done: int, total: int) -> None:
        err.print(f"  {stage} {done:,}/{total:,} ({time.perf_counter() - t0:.0f}s)", end="\r")

    with err.status(f"Indexing {items.height:,} products (embeddings cached in {cache or default_cache_dir()}) ..."):
        engine = SearchEngine.build(items, dense=dense, embedder=embedder)
    if rerank_depth is not None:
        engine.config = replace(engine.config, rerank_depth=rerank_depth)
    judged = ev.judged_queries(judgments, engine)
    queries = [j.query for j in judged]
    err.print(f"Indexed {items.height:,} products in {time.perf_counter() - t0:.0f}s; {len(queries):,} queries.")
    if train is not None or protocol == "cv":
        fit_idx, test_idx = np.arange(len(judged)), np.arange(len(judged))
    else:
        fit_idx, test_idx = ev.holdout_split(judged)
        if not len(fit_idx) or not len(test_idx):
            err.print(error_line("the holdout protocol needs queries on both sides of the split; "
                      "use --protocol cv"))
            raise typer.Exit(2)

    t1 = time.perf_counter()
    bm25 = ev.bm25_baseline(engine.catalog.texts["title"], queries, k=200)
    bm25_s = time.perf_counter() - t1
    fusion_report: dict[str, Any] = {"tuned": False}
    if tune_fusion and train is None and protocol == "holdout":
        t1 = time.perf_counter()
        grid = tune.fusion_grid()
        sample = fit_idx if not 0 < tune_queries < len(fit_idx) else \
            np.sort(np.random.default_rng(seed).choice(fit_idx, size=tune_queries, replace=False))
        kept = ev.prepare(engine, [queries[i] for i in sample], features=False,
                          list_depth=max(s.k_lex for s in grid), progress=progress)
        best, trials = tune.tune_fusion(kept, [judged[i] for i in sample], range(len(sample)),
                                        depth=engine.config.rerank_depth,
                                        dense_min_similarity=engine.config.dense_min_similarity, grid=grid,
                                        recall_slack=fusion_recall_slack, progress=progress)
        del kept
        engine.config = replace(engine.config, rrf_k=best.fusion.rrf_k, dense_weight=best.fusion.dense_weight,
                                k_lex=best.k_lex, k_dense=best.k_dense, k_lex_any=best.k_lex_any)
        fusion_report = {"tuned": True, "on": f"{len(sample):,} fitted queries", "recall_slack": fusion_recall_slack,
                         "trials": trials,
                         "seconds": round(time.perf_counter() - t1, 1)}
    fusion_report["chosen"] = {"rrf_k": engine.config.rrf_k, "dense_weight": engine.config.dense_weight,
                               "k_lex": engine.config.k_lex, "k_dense": engine.config.k_dense,
                               "k_lex_any": engine.config.k_lex_any,
                               "rerank_depth": engine.config.rerank_depth}
    t1 = time.perf_counter()
    prep = ev.prepare(engine, queries, list_depth=200, progress=progress)
    hybrid = [p.rows for p in prep]
    hybrid_s = time.perf_counter() - t1
    use_memory = memory and dense and train is None and protocol == "holdout"
    plain_prep, memory_report, memory_s = prep, {"on": False}, 0.0
    fitted_memory = None
    if use_memory:
        t1 = time.perf_counter()
        memories, fitted_memory = ev.cross_fitted_memories(engine, judged, fit_idx)
        prep = ev.prepare(engine, queries, list_depth=200, progress=progress, memories=memories)
        del memories
        memory_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    rerank_report: dict[str, Any] = {}
    params: dict[str, object] | None = None
    rounds: int | None = None
    if tune_reranker and train is None:
        (name, params, rounds), trials = tune.tune_reranker(prep, judged, fit_idx, progress=progress)
        rerank_report = {"tuned": name, "trials": trials}
    labels = ev.head_gains(prep, judged)
    cv_rankings = None
    if train is not None:
        tdata = _read(train, "--train")
        tjudg = tdata.extras["judgments"].filter(pl.col("relevance").is_not_null())
        tengine = SearchEngine.build(tdata.items, dense=dense, embedder=embedder, config=engine.config)
        tjudged = ev.judged_queries(tjudg, tengine)
        tprep = ev.prepare(tengine, [j.query for j in tjudged], progress=progress)
        model = ev.fit(tprep, ev.head_gains(tprep, tjudged), list(range(len(tprep))))
        aisle = [ev.apply(model, p) for p in prep]
        how = f"trained on {train} ({len(tjudged):,} queries)"
    elif protocol == "cv":
        aisle, model = ev.cross_validated(prep, judged, folds, progress=progress, params=params, rounds=rounds)
        how = f"query-grouped {folds}-fold cross-validation"
    else:
        model = ev.fit(prep, labels, fit_idx, params=params, rounds=rounds)
        scored = set(test_idx.tolist())
        aisle = [ev.apply(model, p) if i in scored else p.rows for i, p in enumerate(prep)]
        if use_memory:
            plain_model = ev.fit(plain_prep, ev.head_gains(plain_prep, judged), fit_idx, params=params, rounds=rounds)
            plain = [ev.apply(plain_model, p) if i in scored else p.rows for i, p in enumerate(plain_prep)]
            memory_report = _memory_report(prep, judged, test_idx, {"aisle-no-memory": plain, "aisle": aisle})
            memory_report["logged_queries"] = len(fit_idx)
        how = (f"fitted on {len(fit_idx):,} queries (80%), scored on the {len(test_idx):,} held-out ones "
               "(fold_of(query, 5) == 0)")
        if cv_row:
            cv_rankings, _ = ev.cross_validated(prep, judged, folds, progress=progress, params=params, rounds=rounds)
    rerank_s = time.perf_counter() - t1
    err.print(" " * 60, end="\r")

    test = [judged[i] for i in test_idx]

    def on_test(rankings: list[np.ndarray], idx: np.ndarray = test_idx) -> dict[str, float | int]:
        return ev.metrics([rankings[i] for i in idx], [judged[i] for i in idx], recall_at_k=(100, 200))

    systems = {
        "bm25": {**on_test(bm25), "seconds": round(bm25_s, 1),
                 "description": "bm25s, titles only, English stemmer + stopwords"},
        "hybrid": {**on_test(hybrid), "seconds": round(hybrid_s, 1),
                   "description": f"Aisle query understanding + field BM25 + {'fine-tuned ' if encoder else ''}"
                   "MiniLM, RRF fusion, nothing learned" if dense
                   else "Aisle query understanding + field BM25, nothing learned"},
        "aisle": {**on_test(aisle), "seconds": round(hybrid_s + memory_s + rerank_s, 1),
                  "description": f"hybrid + {'search memory + ' if use_memory else ''}LambdaMART reranker, {how}"},
    }
    if use_memory:
        systems["aisle-no-memory"] = {**on_test(plain), "seconds": round(hybrid_s + rerank_s, 1),
                                      "description": "the same without the search memory"}
        systems = {k: systems[k] for k in ("bm25", "hybrid", "aisle-no-memory", "aisle")}
    if cv_rankings is not None:
        systems["aisle-cv"] = {**on_test(cv_rankings, np.arange(len(judged))), "seconds": round(rerank_s, 1),
                               "description": f"the reranker by query-grouped {folds}-fold CV over all "
                               f"{len(judged):,} queries (the fusion was tuned on 80% of them)"}
    names = sorted({k for p in prep for k in p.lists if k not in ("lexical_ok", "dense_sim")})
    retrievers = {n: on_test([p.lists.get(n, np.zeros(0, np.int32)) for p in prep]) for n in names}
    types = _by_type(prep, judged, test_idx, {"bm25": bm25, "hybrid": hybrid,
                                              **({"aisle-no-memory": plain} if use_memory else {}), "aisle": aisle})
    result = {
        "dataspec": dataspec, "catalog": catalog or dataspec, "queries": len(queries), "products": items.height,
        "judgments": judgments.height, "scored_queries": len(test), "protocol": {
            "name": "separate training file" if train is not None else protocol,
            "ndcg": "NDCG@10, gain = relevance - 1, unjudged = 0, queries with a positive ideal DCG",
            "recall": "Recall@100 / @200 of judged items with relevance >= 2", "reranker": how, "folds": folds,
            "dense": dense, "encoder": embedder.model_name if embedder is not None else None,
            "sample_queries": sample_queries, "catalog_size": catalog_size, "seed": seed},
        "systems": systems, "retrievers": retrievers, "types": types, "fusion": fusion_report,
        "memory": memory_report,
        "reranker": {**rerank_report, "params": params or "defaults", "rounds": rounds or "default",
                     "features": len(prep[0].features[0]) if any(len(p.features) for p in prep) else 0},
        "reranker_importance": {k: round(v, 1) for k, v in list(model.importance().items())[:15]} if model else {},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = err if json_out == Path("-") else console
    _print_tables(out, result, dataspec, items.height)
    if save is not None:
        engine.reranker = ev.fit(prep, labels, list(range(len(prep))), params=params, rounds=rounds)
        if fitted_memory is not None:  # the reranker learned on cross-fitted memories; it serves with all of it
            engine.memory = ev.search_memory(engine, judged)
        engine.save(save)
        err.print(f"Saved the index with a reranker fitted on all {len(prep):,} queries to {save}")
    if json_out is not None:
        text = json.dumps(result, indent=2)
        if json_out == Path("-"):
            sys.stdout.write(text + "\n")
        else:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(text + "\n")


def _by_type(prep: list[Any], judged: list[Any], test_idx: Any, rankings: dict[str, list[Any]]) -> dict[str, Any]:
    """NDCG@10 / Recall@100 per query type (`aisle.search.querytypes`) over the scored queries."""
    from aisle.search import evaluate as ev
    from aisle.search.querytypes import TYPES

    out: dict[str, Any] = {}
    for t in ("all", *TYPES):
        idx = [i for i in test_idx if t == "all" or t in prep[i].types]
        if not idx:
            continue
        sub = [judged[i] for i in idx]
        out[t] = {"queries": len(idx), **{name: {k: round(float(v), 4) for k, v in
                                                  ev.metrics([r[i] for i in idx], sub).items()
                                                  if k in ("ndcg@10", "recall@100")}
                                           for name, r in rankings.items()}}
    return out


#: similarity levels of the held-out queries' closest logged query that the memory report splits them by
MEMORY_LEVELS: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9)


def _memory_report(prep: list[Any], judged: list[Any], test_idx: Any,
                   rankings: dict[str, list[Any]]) -> dict[str, Any]:
    """How many scored queries have a logged neighbour at least X alike, and the rows' metrics with and without
    one: how much of the memory's effect is near-duplicate queries and how much generalises."""
    from aisle.search import evaluate as ev

    out: dict[str, Any] = {"on": True, "levels": {}}
    for level in MEMORY_LEVELS:
        near = [i for i in test_idx if prep[i].memory_sim >= level]
        far = [i for i in test_idx if prep[i].memory_sim < level]
        row: dict[str, Any] = {"with_neighbour": len(near), "without": len(far)}
        for side, idx in (("with_neighbour", near), ("without", far)):
            if idx:
                sub = [judged[i] for i in idx]
                row[f"{side}_metrics"] = {name: {k: round(float(v), 4) for k, v in
                                                 ev.metrics([r[i] for i in idx], sub).items()
                                                 if k in ("ndcg@10", "recall@100")}
                                          for name, r in rankings.items()}
        out["levels"][f"{level:g}"] = row
    return out


def _print_tables(out: Console, result: dict[str, Any], dataspec: str, products: int) -> None:
    systems, n = result["systems"], result["scored_queries"]
    table = Table(title=f"Search on {dataspec}: {n:,} scored queries ({result['protocol']['name']}), "
                  f"{products:,} products (whole catalog)")
    for col in ("system", "NDCG@10", "Recall@100", "Recall@200", "seconds", "what"):
        table.add_column(col, justify="left" if col in ("system", "what") else "right")
    for name, m in systems.items():
        table.add_row(name, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['recall@200']:.4f}",
                      f"{m['seconds']:.0f}", str(m["description"]))
    out.print(table)
    table = Table(title="Each retriever's own list (scored queries)")
    for col in ("retriever", "NDCG@10", "Recall@100", "Recall@200"):
        table.add_column(col, justify="left" if col == "retriever" else "right")
    for name, m in result["retrievers"].items():
        table.add_row(name, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['recall@200']:.4f}")
    out.print(table)
    table = Table(title="NDCG@10 per query type (scored queries; a query may have several types)")
    names = list(next(iter(result["types"].values()))) if result["types"] else []
    systems_named = [x for x in names if x != "queries"]
    for col in ("type", "queries", *systems_named):
        table.add_column(col, justify="left" if col == "type" else "right")
    for t, row in result["types"].items():
        table.add_row(t, f"{row['queries']:,}", *(f"{row[x]['ndcg@10']:.4f}" for x in systems_named))
    out.print(table)
    if result["memory"].get("on"):
        table = Table(title="Search memory: scored queries by their closest logged query's similarity (NDCG@10)")
        for col in ("closest logged query", "queries", "aisle-no-memory", "aisle"):
            table.add_column(col, justify="left" if col == "closest logged query" else "right")
        for level, row in result["memory"]["levels"].items():
            for side, label in (("with_neighbour", f">= {level}"), ("without", f"< {level}")):
                m = row.get(f"{side}_metrics")
                if m:
                    table.add_row(label, f"{row[side]:,}", f"{m['aisle-no-memory']['ndcg@10']:.4f}",
                                  f"{m['aisle']['ndcg@10']:.4f}")
        out.print(table)
    ch = result["fusion"]["chosen"]
    out.print(f"Fusion{' (tuned on ' + result['fusion']['on'] + ')' if result['fusion']['tuned'] else ''}: "
              f"RRF k {ch['rrf_k']:g}, dense weight {ch['dense_weight']:g}, lists {ch['k_lex']} lexical + "
              f"{ch['k_dense']} dense (the first {ch['k_lex_any']} lexical ones whatever words they match), first "
              f"{ch['rerank_depth']} reranked.")
