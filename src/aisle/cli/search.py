"""`aisle search-eval`: measure search on graded relevance judgments, plain BM25 and Aisle side by side.

The protocol (whole-catalog ranking, linear-gain NDCG@10, Recall@100 of items rated >= 2, query-grouped
cross-validation of the reranker) is documented in `aisle.search.evaluate`. Heavy imports happen inside the
command so `aisle --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


def _read(spec: str, option: str) -> Any:
    from aisle.data.readers import read_dataspec
    from aisle.data.validation import DataError

    try:
        data = read_dataspec(spec)
    except (DataError, ValueError, FileNotFoundError, OSError) as exc:
        err.print(f"[red]error:[/] {option}: {exc}")
        raise typer.Exit(2) from None
    if "judgments" not in data.extras and option != "--catalog":
        err.print(f"[red]error:[/] {option}: {spec} has no relevance judgments (e.g. use the homedepot format)")
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
    folds: Annotated[int, typer.Option(help="Query-grouped cross-validation folds for the reranker.")] = 5,
    sample_queries: Annotated[int | None, typer.Option(help="Evaluate a random subset of this many queries.")]
    = None,
    catalog_size: Annotated[int | None, typer.Option(help="Restrict the catalog to the evaluated queries' judged "
                                                     "products plus random others, this many in all.")] = None,
    dense: Annotated[bool, typer.Option(help="Use the MiniLM dense retriever.")] = True,
    cache: Annotated[Path | None, typer.Option(help="Embedding cache folder (default $AISLE_CACHE or "
                                               "~/.cache/aisle).")] = None,
    save: Annotated[Path | None, typer.Option(help="Also fit the reranker on all queries and save the search "
                                              "index here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample-queries / --catalog-size.")] = 0,
) -> None:
    """Rank the whole catalog for every judged query; print NDCG@10 / Recall@100 of bm25 and Aisle."""
    import numpy as np
    import polars as pl

    from aisle.search import evaluate as ev
    from aisle.search.embed import Embedder, default_cache_dir
    from aisle.search.engine import SearchEngine

    if folds < 2 and train is None:
        raise typer.BadParameter("need at least 2 folds (or --train)", param_hint="--folds")
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
    embedder = Embedder(cache or default_cache_dir()) if dense else None

    def progress(stage: str, done: int, total: int) -> None:
        err.print(f"  {stage} {done:,}/{total:,} ({time.perf_counter() - t0:.0f}s)", end="\r")

    with err.status(f"Indexing {items.height:,} products (embeddings cached in {cache or default_cache_dir()}) ..."):
        engine = SearchEngine.build(items, dense=dense, embedder=embedder)
    judged = ev.judged_queries(judgments, engine)
    queries = [j.query for j in judged]
    err.print(f"Indexed {items.height:,} products in {time.perf_counter() - t0:.0f}s; {len(queries):,} queries.")

    t1 = time.perf_counter()
    bm25 = ev.bm25_baseline(engine.catalog.texts["title"], queries)
    bm25_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    prep = ev.prepare(engine, queries, progress=progress)
    hybrid = [p.rows for p in prep]
    hybrid_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    if train is not None:
        tdata = _read(train, "--train")
        tjudg = tdata.extras["judgments"].filter(pl.col("relevance").is_not_null())
        tengine = SearchEngine.build(tdata.items, dense=dense, embedder=embedder)
        tjudged = ev.judged_queries(tjudg, tengine)
        tprep = ev.prepare(tengine, [j.query for j in tjudged], progress=progress)
        model = ev.fit(tprep, ev.head_gains(tprep, tjudged), list(range(len(tprep))))
        aisle = [ev.apply(model, p) for p in prep]
        how = f"trained on {train} ({len(tjudged):,} queries)"
    else:
        aisle, model = ev.cross_validated(prep, judged, folds, progress=progress)
        how = f"query-grouped {folds}-fold cross-validation"
    rerank_s = time.perf_counter() - t1
    err.print(" " * 60, end="\r")

    systems = {
        "bm25": {**ev.metrics(bm25, judged), "seconds": round(bm25_s, 1),
                 "description": "bm25s, titles only, English stemmer + stopwords"},
        "hybrid": {**ev.metrics(hybrid, judged), "seconds": round(hybrid_s, 1),
                   "description": "Aisle query understanding + field BM25 + MiniLM, RRF fusion, nothing learned"
                   if dense else "Aisle query understanding + field BM25, nothing learned"},
        "aisle": {**ev.metrics(aisle, judged), "seconds": round(hybrid_s + rerank_s, 1),
                  "description": f"hybrid + LambdaMART reranker, {how}"},
    }
    result = {
        "dataspec": dataspec, "catalog": catalog or dataspec, "queries": len(queries), "products": items.height,
        "judgments": judgments.height, "protocol": {
            "ndcg": "NDCG@10, gain = relevance - 1, unjudged = 0, queries with a positive ideal DCG",
            "recall": "Recall@100 of judged items with relevance >= 2", "reranker": how, "folds": folds,
            "dense": dense, "sample_queries": sample_queries, "catalog_size": catalog_size, "seed": seed},
        "systems": systems,
        "reranker_importance": {k: round(v, 1) for k, v in list(model.importance().items())[:15]} if model else {},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    table = Table(title=f"Search on {dataspec}: {len(queries):,} queries, {items.height:,} products (whole catalog)")
    for col in ("system", "NDCG@10", "Recall@100", "seconds", "what"):
        table.add_column(col, justify="right" if col in ("NDCG@10", "Recall@100", "seconds") else "left")
    for name, m in systems.items():
        table.add_row(name, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['seconds']:.0f}",
                      str(m["description"]))
    (err if json_out == Path("-") else console).print(table)
    if save is not None:
        labels = ev.head_gains(prep, judged)
        engine.reranker = ev.fit(prep, labels, list(range(len(prep))))
        engine.save(save)
        err.print(f"Saved the index with a reranker fitted on all {len(prep):,} queries to {save}")
    if json_out is not None:
        text = json.dumps(result, indent=2)
        if json_out == Path("-"):
            sys.stdout.write(text + "\n")
        else:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(text + "\n")
