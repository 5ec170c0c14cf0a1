"""`SearchEngine`: the store-facing search API over one catalog.

A request goes: parse the query (`query.QueryParser`) -> apply filters -> fused lexical + dense (+ search memory:
`memory`, when the engine has one) candidates (`retrieve`) -> LambdaMART rerank of the first `rerank_depth`
(`rerank`, when trained) -> personal boost -> sort -> facets -> page. Design choices:

* Extracted intent becomes a *hard* filter only where the store has that data as structure: a price range when
  items have prices, a brand when the catalog has a brand column (not brands inferred from titles), a leaf
  category, an attribute value the catalog has under that key ("black" -> color). Otherwise it stays soft: a
  reranker feature. Caller filters always apply and are never relaxed.
* The result set (what `total` and the facets count) is every item containing at least `min_should_match` of the
  query's words in its own fields (half, rounded up: 1 of 2 words, 2 of 3 or 4), plus the dense candidates with
  cosine >= `dense_min_similarity`. The fused candidates in that set are ranked (and reranked) first, then the
  rest of the set by BM25. Offline evaluation ranks exactly the same way. (On Home Depot, 60% instead of half
  cost 0.005 NDCG@10; half costs ~0.001 against accepting any single word, and keeps totals and facets
  meaningful.)
* Zero results: relax the extracted filters one by one, the most selective first (the one fewest items pass),
  then drop the query word fewest products contain, until something matches; `SearchResult.relaxed` says what
  was given up.
* Personalisation (`user_affinity={"brands": {...}, "categories": {...}}`, weights in [0, 1]) adds
  `affinity_weight x affinity` to the min-max-normalised relevance of the reranked head only: it reorders
  relevant results towards a shopper's taste and never pulls in irrelevant ones.

Persistence (`save`/`load`): a folder of JSON and .npy files plus the LightGBM text model; no pickle. An index built
with a fine-tuned encoder (`aisle.search.adapt`) carries it (`encoder/`, with its ONNX exports in `encoder-onnx/`),
and `load` serves queries with it through whatever embedder the caller passes (`Embedder.for_model`): query and
item vectors always come from the same weights.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from aisle.overlay import Layered
from aisle.search import features as feats
from aisle.search.catalog import Catalog
from aisle.search.dense import DenseIndex
from aisle.search.embed import MODEL_NAME, Embedder
from aisle.search.lexical import DERIVED, LexicalIndex
from aisle.search.memory import Recollection, SearchMemory
from aisle.search.query import Filters, ParsedQuery, QueryParser
from aisle.search.rerank import RERANK_DEPTH, Reranker
from aisle.search.results import Hit, SearchResult, facet_counts
from aisle.search.retrieve import DENSE_WEIGHT, MEMORY_WEIGHT, RRF_K, Candidates, Fusion, QueryTerms, Retriever
from aisle.search.spell import SpellIndex
from aisle.search.text import analyze, normalize

Sort = Literal["relevance", "price_asc", "price_desc", "popularity"]
FORMAT_VERSION = 1
ENCODER_DIR = "encoder"  # a fine-tuned dense encoder (SentenceTransformer folder) inside a saved search index


@dataclass
class SearchConfig:
    k_lex: int = 200
    k_dense: int = 200
    rerank_depth: int = RERANK_DEPTH
    rrf_k: float = RRF_K  # fusion (`retrieve.Fusion`); `aisle search-eval` tunes it on development queries
    dense_weight: float = DENSE_WEIGHT
    k_memory: int = 30  # the search memory's products fused into the candidates (when the engine has a memory)
    memory_weight: float = MEMORY_WEIGHT
    k_lex_any: int = 0  # the first this many lexical candidates are eligible even below `min_should_match`
    min_should_match: float = 0.5
    dense_min_similarity: float = 0.3
    affinity_weight: float = 0.2
    facet_size: int = 20


class SearchEngine:
    def __init__(self, catalog: Catalog, lexical: LexicalIndex, dense: DenseIndex | None, spell: SpellIndex,
                 *, embedder: Embedder | None = None, reranker: Reranker | None = None,
                 config: SearchConfig | None = None, memory: SearchMemory | None = None) -> None:
        self.catalog, self.lexical, self.dense, self.spell = catalog, lexical, dense, spell
        self.memory = memory  # `aisle.search.memory`: served only with the encoder whose query vectors it holds
        self.parser = QueryParser(spell, catalog.normalized_values())
        self.retriever = Retriever(lexical, dense)
        self.embedder = embedder if embedder is not None else (Embedder() if dense is not None else None)
        self.reranker = reranker
        self.config = config or SearchConfig()
        self._row: Layered[str, int] = Layered.sharing({item: i for i, item in enumerate(catalog.item_ids)})
        self._leaves = {normalize(v) for v in catalog.leaf_category.values}

    # ---- building ----------------------------------------------------------------------------------

    @classmethod
    def build(cls, items: pl.DataFrame, *, dense: bool = True, embedder: Embedder | None = None,
              cache_dir: Path | None = None, popularity: Mapping[str, float] | None = None,
              config: SearchConfig | None = None, progress: bool = False) -> SearchEngine:
        """Index an ITEM_SCHEMA frame. Item vectors come from (and go to) the embedding cache in `cache_dir`."""
        catalog = Catalog.from_items(items, popularity=dict(popularity) if popularity else None)
        lexical = LexicalIndex.build(catalog.texts)
        spell = SpellIndex.from_words(catalog.vocabulary_docs())
        dense_index = None
        if dense:
            embedder = embedder or Embedder(cache_dir)
            texts = [catalog.embedding_text(i) for i in range(len(catalog))]
            dense_index = DenseIndex(embedder.embed_texts(texts, progress=progress))
        return cls(catalog, lexical, dense_index, spell, embedder=embedder, config=config)

    def with_catalog(self, items: pl.DataFrame, *, embedder: Embedder | None = None) -> SearchEngine:
        """The engine over a changed catalog (items upserted since it was built), with its reranker kept.

        Popularity stays on this engine's own scale (what it was built with, e.g. purchase counts; a new item has
        none yet), because the reranker learned its popularity feature on that scale: mixing in another scale after
        an upsert would shift every ranking."""
        known = dict(zip(self.catalog.item_ids, self.catalog.popularity.tolist(), strict=False))
        # this engine's rows first, in its order, then the new ones: rank ties break by row, so the same items in
        # another order would already move some rankings
        order = {item: n for n, item in enumerate(self.catalog.item_ids)}
        items = items.with_columns(pl.col("item_id").replace_strict(order, default=len(order), return_dtype=pl.Int64)
                                   .alias("_row")).sort("_row", maintain_order=True).drop("_row")
        engine = SearchEngine.build(items, dense=self.dense is not None,
                                    embedder=self._own_encoder(embedder) if self.dense is not None else None,
                                    popularity={i: known.get(i, 0.0) for i in items["item_id"].to_list()},
                                    config=self.config)
        engine.reranker = self.reranker
        if self.memory is not None:  # the same products, under the new catalog's row numbers
            engine.memory = self.memory.rebased(engine.item_rows(list(self.catalog.item_ids)))
        return engine

    @property
    def encoder_name(self) -> str | None:
        """The dense encoder's name (`all-MiniLM-L6-v2`, or a fine-tune's with its digest); None without dense."""
        return self.embedder.model_name if self.dense is not None and self.embedder is not None else None

    def _own_encoder(self, embedder: Embedder | None) -> Embedder | None:
        """`embedder` (or this engine's) over this engine's encoder: a caller's embedder is usually the packaged
        model's, and an index must never mix vectors of two encoders."""
        embedder = embedder or self.embedder
        if embedder is None or self.embedder is None:
            return embedder
        return embedder.for_model(self.embedder.model_path)

    def with_encoder(self, embedder: Embedder, *, progress: bool = False) -> SearchEngine:
        """This engine with its dense index rebuilt by another encoder (a fine-tuned one: `aisle.search.adapt`);
        catalog, lexical index and spelling are shared. The reranker is dropped: it learned on the old encoder's
        cosines, so the caller trains a new one; so is the search memory, whose query vectors are the old encoder's."""
        texts = [self.catalog.embedding_text(i) for i in range(len(self.catalog))]
        dense = DenseIndex(embedder.embed_texts(texts, progress=progress))
        return SearchEngine(self.catalog, self.lexical, dense, self.spell, embedder=embedder, config=self.config)

    def with_items(self, items: pl.DataFrame) -> SearchEngine:
        """The engine after upserting `items` (an ITEM_SCHEMA frame of changed and new items), in time
        proportional to them: the lexical index, the dense index and the spelling vocabulary take them as a delta,
        the catalog columns are copied with their rows replaced or appended, and every structure this engine holds
        stays as it is (requests still running on it finish on it; the caller swaps the new one in).

        Known rows keep their place and new items are appended, so the other items rank exactly as before; the
        delta is saved with the engine and merged into the base arrays by the next full build (a refit's)."""
        items = items.unique("item_id", keep="last", maintain_order=True)
        if items.is_empty():
            return self
        upserted = Catalog.from_items(items, infer_brand=False)
        rows, added = [], {}
        for item_id in upserted.item_ids:
            row = self._row.get(item_id)
            if row is None:
                row = added[item_id] = len(self._row) + len(added)
            rows.append(row)
        catalog = self.catalog.with_items(rows, upserted)
        out = copy.copy(self)
        out.catalog, out._row = catalog, self._row.with_items(added)
        out.lexical = self.lexical.with_docs(rows, upserted.texts, len(catalog))
        docs = list(upserted.vocabulary_docs())
        out.spell = self.spell.with_docs(docs, rows)
        if self.dense is not None:
            vectors = self.embed_items(items)
            assert vectors is not None
            out.dense = self.dense.with_rows(np.asarray(rows, np.int64), vectors)
        out.retriever = Retriever(out.lexical, out.dense)
        grew = _value_counts(catalog) != _value_counts(self.catalog)  # a brand, category or value never seen
        added = list({w for doc in docs for w in doc if w not in self.spell})
        out.parser = self.parser.with_words(out.spell, added, catalog.normalized_values() if grew else None)
        if grew:
            out._leaves = {normalize(v) for v in catalog.leaf_category.values}
        return out

    def item_vectors(self) -> tuple[list[str], np.ndarray] | None:
        """(item ids, their dense vectors), None without a dense index."""
        return None if self.dense is None else (list(self.catalog.item_ids), self.dense.vectors)

    def embed_items(self, items: pl.DataFrame) -> np.ndarray | None:
        """Dense vectors of catalog rows not indexed here, made the way the index made its own (cold start)."""
        if self.dense is None or self.embedder is None:
            return None
        new = Catalog.from_items(items)
        return self.embedder.embed_texts([new.embedding_text(i) for i in range(len(new))])

    def item_rows(self, item_ids: list[str]) -> np.ndarray:
        """Catalog rows of `item_ids` (-1 for ids not in the catalog)."""
        return np.array([self._row.get(str(i), -1) for i in item_ids], dtype=np.int64)

    # ---- the pieces a request is made of (also used by evaluation) ----------------------------------

    @property
    def fusion(self) -> Fusion:
        return Fusion(rrf_k=self.config.rrf_k, dense_weight=self.config.dense_weight,
                      memory_weight=self.config.memory_weight)

    def understand(self, query: str) -> tuple[ParsedQuery, QueryTerms]:
        pq = self.parser.parse(query)
        return pq, QueryTerms.from_parsed(pq)

    @staticmethod
    def embedding_query(pq: ParsedQuery) -> str:
        """The text the dense side embeds: the corrected words when something was corrected, else the query."""
        return pq.corrected if pq.corrections else " ".join(pq.normalized.split())

    def query_vector(self, pq: ParsedQuery) -> np.ndarray | None:
        if self.dense is None or self.embedder is None:
            return None
        return self.embedder.embed_query(self.embedding_query(pq))

    def recall(self, qvec: np.ndarray | None) -> Recollection | None:
        """What the search memory holds for a query vector; None without a memory (or without a vector)."""
        return None if self.memory is None or qvec is None else self.memory.recall(qvec)

    def hard_filters(self, extracted: Filters) -> Filters:
        """The part of the query's extracted intent the catalog can enforce (see module docstring)."""
        cat = self.catalog
        has_price = bool(np.isfinite(cat.price).any())
        attrs = {k: [v for v in vals if len(cat.attributes[k].codes_of([v]))]
                 for k, vals in extracted.attributes.items() if k in cat.attributes}
        return Filters(
            price_min=extracted.price_min if has_price else None,
            price_max=extracted.price_max if has_price else None,
            brands=[] if cat.brand_inferred else extracted.brands,
            categories=[c for c in extracted.categories if normalize(c) in self._leaves],
            attributes={k: v for k, v in attrs.items() if v},
        )

    def mask(self, f: Filters) -> np.ndarray | None:
        """Boolean mask of the items passing `f`, or None when it filters nothing."""
        if f.is_empty():
            return None
        cat, n = self.catalog, len(self.catalog)
        m = np.ones(n, dtype=bool)
        if f.price_min is not None:
            m &= cat.price >= f.price_min
        if f.price_max is not None:
            m &= cat.price <= f.price_max
        if f.brands:
            m &= cat.brand.mask(f.brands, n)
        if f.exclude_brands:
            m &= ~cat.brand.mask(f.exclude_brands, n)
        if f.categories:
            m &= cat.category.mask(f.categories, n)
        for key, vals in f.attributes.items():
            if vals:
                m &= cat.attributes[key].mask(vals, n) if key in cat.attributes else np.zeros(n, dtype=bool)
        if f.available is not None:
            m &= cat.available == f.available
        return m

    def min_match(self, terms: QueryTerms) -> int:
        """Query words an item must contain to match lexically: `min_should_match` of them, rounded up."""
        n = len(set(terms.tokens))
        return max(1, math.ceil(self.config.min_should_match * n)) if n else 1

    def eligible(self, cand: Candidates, terms: QueryTerms) -> Candidates:
        """Candidates that match enough query words (or are among the first `k_lex_any` lexical hits: a long query's
        best BM25 matches may hold fewer than half its words) or are close dense neighbours, in fusion (RRF) order."""
        lexical = cand.lex_rank > 0
        if cand.matched is not None and terms.tokens:
            lexical &= (cand.matched >= self.min_match(terms)) | (cand.lex_rank <= self.config.k_lex_any)
        ok = lexical | ((cand.dense_rank > 0) & (cand.dense >= self.config.dense_min_similarity))
        if cand.memory_rank is not None:
            ok |= cand.memory_rank > 0
        idx = np.flatnonzero(ok)
        return _subset(cand, idx[np.argsort(-cand.rrf[idx], kind="stable")])

    def head_features(self, pq: ParsedQuery, terms: QueryTerms, ranked: Candidates) -> np.ndarray:
        """Features of the first `rerank_depth` of fusion-ordered candidates (what the reranker sees)."""
        head = _subset(ranked, np.arange(min(len(ranked), self.config.rerank_depth)))
        return feats.compute(pq, terms, head, self.catalog, self.lexical)

    def rerank(self, pq: ParsedQuery, terms: QueryTerms, ranked: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """Rows of fusion-ordered candidates in final order, with scores: the reranked head, then the rest."""
        if self.reranker is None or len(ranked) == 0:
            return ranked.rows, ranked.rrf.astype(np.float64)
        scores = self.reranker.predict(self.head_features(pq, terms, ranked))
        o = np.argsort(-scores, kind="stable")
        depth = len(scores)
        low = float(scores.min())
        tail = low - 1.0 - np.arange(len(ranked) - depth) * 1e-6
        return np.concatenate([ranked.rows[:depth][o], ranked.rows[depth:]]), np.concatenate([scores[o], tail])

    def result_set(self, terms: QueryTerms, ranked: Candidates, mask: np.ndarray | None) -> np.ndarray:
        """Rows of every matching item: all that contain enough query words, plus the eligible candidates."""
        if ranked.matched_all is not None and terms.tokens:
            ok = ranked.matched_all >= self.min_match(terms)
        else:
            ok = np.zeros(len(self.catalog), dtype=bool)
        if mask is not None:
            ok &= mask
        ok[ranked.rows] = True
        return np.flatnonzero(ok)

    # ---- the request ---------------------------------------------------------------------------------

    def search(self, query: str, *, filters: Filters | None = None, sort: Sort = "relevance", page: int = 1,
               page_size: int = 20, user_affinity: Mapping[str, Mapping[str, float]] | None = None) -> SearchResult:
        t0 = time.perf_counter()
        if sort not in ("relevance", "price_asc", "price_desc", "popularity"):
            raise ValueError(f"unknown sort {sort!r}")
        page, page_size = max(1, page), max(1, page_size)
        pq, terms = self.understand(query)
        explicit = filters or Filters()
        extracted = self.hard_filters(pq.filters)
        if not terms.lex_tokens:  # nothing to match ("", "under $50"): browse what the filters let through
            return self._browse(pq, explicit.merged(extracted), sort, page, page_size, user_affinity, t0)
        qvec = self.query_vector(pq)
        relaxed: list[str] = []
        while True:
            applied = explicit.merged(extracted)
            ordered, scores, rows, cand = self._rank(pq, terms, qvec, applied)
            if len(rows) or not self._relax(extracted, explicit, relaxed):
                break
        while not len(rows) and len(set(terms.tokens)) > 1:
            word = self._rarest_word(pq)
            if word is None:
                break
            relaxed.append(f"dropped word '{word}'")
            kept = [w for w in pq.corrected.split() if w != word]
            pq = replace(pq, corrected=" ".join(kept), residual=" ".join(w for w in pq.residual.split() if w != word))
            terms = QueryTerms.from_parsed(replace(pq, stripped=pq.corrected))
            ordered, scores, rows, cand = self._rank(pq, terms, qvec, applied)
        rows_ranked, score_ranked = self._order(ordered, scores, rows, cand, sort, user_affinity)
        start = (page - 1) * page_size
        page_rows = rows_ranked[start:start + page_size]
        in_title = self._terms_in_title(terms, page_rows)
        hits = [self._hit(int(r), float(s), in_title[i], cand) for i, (r, s) in
                enumerate(zip(page_rows, score_ranked[start:start + page_size], strict=True))]
        return SearchResult(query=pq, hits=hits, total=len(rows), page=page, page_size=page_size,
                            facets=self.facets(rows), filters=applied, relaxed=relaxed,
                            took_ms=(time.perf_counter() - t0) * 1000)

    def _browse(self, pq: ParsedQuery, applied: Filters, sort: Sort, page: int, page_size: int,
                affinity: Mapping[str, Mapping[str, float]] | None, t0: float) -> SearchResult:
        """A category or brand page: every item passing the filters, most popular first (boosted by the
        shopper's affinities when given), or in the requested sort order."""
        m = self.mask(applied)
        rows = np.flatnonzero(m) if m is not None else np.arange(len(self.catalog), dtype=np.int64)
        pop = self.catalog.popularity
        score = (pop[rows] / (float(pop.max()) or 1.0)) if len(pop) else np.zeros(len(rows))
        if affinity:
            score = score + self.config.affinity_weight * self._affinity(rows, affinity)
        o = np.argsort(-score, kind="stable")
        ranked, scores = self._sorted(rows[o].astype(np.int64), np.asarray(score, np.float64)[o], sort)
        start = (page - 1) * page_size
        hits = [self._hit(int(r), float(sc), [], None) for r, sc in
                zip(ranked[start:start + page_size], scores[start:start + page_size], strict=True)]
        return SearchResult(query=pq, hits=hits, total=len(rows), page=page, page_size=page_size,
                            facets=self.facets(rows), filters=applied, relaxed=[],
                            took_ms=(time.perf_counter() - t0) * 1000)

    def _rank(self, pq: ParsedQuery, terms: QueryTerms, qvec: np.ndarray | None,
              applied: Filters) -> tuple[np.ndarray, np.ndarray, np.ndarray, Candidates]:
        m = self.mask(applied)
        if m is not None and not m.any():
            empty = np.zeros(0, np.int64)
            return empty, np.zeros(0), empty, self.retriever.candidates(terms, None, mask=m, k_lex=0, k_dense=0)
        cand = self.retriever.candidates(terms, qvec, mask=m, k_lex=self.config.k_lex, k_dense=self.config.k_dense,
                                         fusion=self.fusion, recollection=self.recall(qvec),
                                         k_memory=self.config.k_memory)
        ranked = self.eligible(cand, terms)
        rows = self.result_set(terms, ranked, m)
        ordered, scores = self.rerank(pq, terms, ranked)
        return ordered, scores, rows, cand

    def _relax(self, extracted: Filters, explicit: Filters, relaxed: list[str]) -> bool:
        """Drop the most selective extracted filter (the one fewest items pass); False when none is left."""
        parts: list[tuple[str, Filters]] = []
        for key, vals in extracted.attributes.items():
            if vals and key not in explicit.attributes:
                parts.append((f"attr:{key}", Filters(attributes={key: vals})))
        if extracted.categories and not explicit.categories:
            parts.append(("category", Filters(categories=extracted.categories)))
        if extracted.brands and not explicit.brands:
            parts.append(("brand", Filters(brands=extracted.brands)))
        if (extracted.price_min is not None or extracted.price_max is not None) and \
                explicit.price_min is None and explicit.price_max is None:
            parts.append(("price", Filters(price_min=extracted.price_min, price_max=extracted.price_max)))
        if not parts:
            return False
        name, _ = min(parts, key=lambda p: int(m.sum()) if (m := self.mask(p[1])) is not None else len(self.catalog))
        if name.startswith("attr:"):
            key = name[5:]
            relaxed.append(f"{key}={','.join(extracted.attributes.pop(key))}")
        elif name == "category":
            relaxed.append(f"category={','.join(extracted.categories)}")
            extracted.categories = []
        elif name == "brand":
            relaxed.append(f"brand={','.join(extracted.brands)}")
            extracted.brands = []
        else:
            lo, hi = extracted.price_min, extracted.price_max
            relaxed.append(f"price={'' if lo is None else f'{lo:g}'}-{'' if hi is None else f'{hi:g}'}")
            extracted.price_min = extracted.price_max = None
        return True

    def _rarest_word(self, pq: ParsedQuery) -> str | None:
        title = self.lexical.fields["title"]
        best: tuple[int, str] | None = None
        for w in pq.corrected.split():
            toks = analyze(w)
            if not toks:
                continue
            df = min(title.df(t) for t in toks)
            if best is None or df < best[0]:
                best = (df, w)
        return None if best is None else best[1]

    def _order(self, ordered: np.ndarray, scores: np.ndarray, rows: np.ndarray, cand: Candidates, sort: Sort,
               affinity: Mapping[str, Mapping[str, float]] | None) -> tuple[np.ndarray, np.ndarray]:
        """All result rows in the requested order with their scores."""
        scores = np.asarray(scores, dtype=np.float64)
        if affinity and len(ordered):
            head = min(len(ordered), self.config.rerank_depth)
            s = scores[:head]
            span = float(s.max() - s.min()) or 1.0
            boosted = (s - s.min()) / span + self.config.affinity_weight * self._affinity(ordered[:head], affinity)
            o = np.argsort(-boosted, kind="stable")
            ordered = np.concatenate([ordered[:head][o], ordered[head:]])
            scores = np.concatenate([boosted[o], scores[head:] - scores[head:].max() - 1 if head < len(scores)
                                     else scores[head:]])
        rest = np.setdiff1d(rows, ordered, assume_unique=True)
        lex = cand.lex_all[rest] if cand.lex_all is not None else np.zeros(len(rest))
        o = np.argsort(-lex, kind="stable")
        floor = float(scores.min()) - 1.0 if len(scores) else 0.0
        all_rows = np.concatenate([ordered, rest[o]]).astype(np.int64)
        all_scores = np.concatenate([scores, floor - np.arange(len(rest)) * 1e-6])
        return self._sorted(all_rows, all_scores, sort)

    def _sorted(self, all_rows: np.ndarray, all_scores: np.ndarray, sort: Sort) -> tuple[np.ndarray, np.ndarray]:
        """Rows in relevance order, re-sorted by popularity or price when asked (ties keep relevance order)."""
        if sort == "relevance":
            return all_rows, all_scores
        if sort == "popularity":
            key = -self.catalog.popularity[all_rows] if len(self.catalog.popularity) else np.zeros(len(all_rows))
        else:
            p = self.catalog.price[all_rows]
            key = np.where(np.isnan(p), np.inf, p if sort == "price_asc" else -p)
        o = np.lexsort((np.arange(len(all_rows)), key))
        return all_rows[o], all_scores[o]

    def _affinity(self, rows: np.ndarray, affinity: Mapping[str, Mapping[str, float]]) -> np.ndarray:
        out = np.zeros(len(rows))
        cat = self.catalog
        for name, codes in (("brands", cat.brand), ("categories", cat.category)):
            weights = {normalize(k): float(v) for k, v in affinity.get(name, {}).items()}
            if not weights:
                continue
            vals = codes.rows_values(rows)
            out += np.array([max((weights.get(normalize(v), 0.0) for v in vs), default=0.0) for vs in vals])
        return np.clip(out, 0.0, 2.0)

    def _terms_in_title(self, terms: QueryTerms, rows: np.ndarray) -> list[list[str]]:
        """Per row, the query tokens its title contains."""
        title = self.lexical.fields["title"]
        out: list[list[str]] = [[] for _ in rows]
        for t in dict.fromkeys(terms.tokens):
            for j in np.flatnonzero(title.matches_at([t], rows) > 0):
                out[j].append(t)
        return out

    def _hit(self, row: int, score: float, in_title: list[str], cand: Candidates | None) -> Hit:
        cat = self.catalog
        title = cat.texts["title"][row]
        fields, dense, similarity, memory = [], False, None, None
        if cand is not None:
            if cand.recollection is not None:  # shoppers chose it after a similar logged search
                memory = cand.recollection.chosen_after(row)
            fields = [name for name, v in cand.fields_all.items() if name not in DERIVED and v[row] > 0]
            pos = np.searchsorted(cand.rows, row)
            dense = bool(pos < len(cand.rows) and cand.rows[pos] == row and cand.dense_rank[pos] > 0)
            if dense:  # the cosine of query and item vectors: what "close in meaning" rests on
                similarity = round(float(cand.dense[pos]), 4)
        price = float(cat.price[row]) if np.isfinite(cat.price[row]) else None
        return Hit(item_id=cat.item_ids[row], score=score, title=title, brand=cat.texts["brand"][row] or None,
                   price=price, matched={"fields": fields, "terms": in_title, "dense": dense,
                                         "dense_similarity": similarity, "memory_similarity": memory})

    def more_like(self, item_id: str, filters: Filters, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows closest in meaning to the item (cosine of its vector with theirs) among those passing `filters`,
        itself left out: "more like the second one". None without a dense index or for an unknown item."""
        row = self._row.get(item_id)
        if self.dense is None or row is None:
            return None
        m = self.mask(filters)
        m = np.ones(len(self.catalog), dtype=bool) if m is None else m.copy()
        m[row] = False
        if not m.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self.dense.search(self.dense.vectors[row], k, m)

    def attribute_values(self, item_ids: list[str], key: str) -> list[str]:
        """The values of attribute `key` the given items have (in item order, one list)."""
        codes = self.catalog.attributes.get(key)
        if codes is None:
            return []
        rows = self.item_rows(item_ids)
        return [v for vals in codes.rows_values(rows[rows >= 0]) for v in vals]

    def facets(self, rows: np.ndarray) -> dict[str, list[dict[str, Any]]]:
        """Category, brand and price-bucket counts over the result rows."""
        return facet_counts(self.catalog, rows, self.config.facet_size)

    # ---- persistence -----------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        encoder = self.embedder.model_path if self.dense is not None and self.embedder is not None else None
        manifest = {"format": "aisle-search", "version": FORMAT_VERSION, "items": len(self.catalog),
                    "config": asdict(self.config), "features": list(feats.FEATURES),
                    "embedding_model": self.embedder.model_name if encoder is not None else MODEL_NAME,
                    "encoder": ENCODER_DIR if encoder is not None else None,
                    "dense": self.dense is not None, "reranker": self.reranker is not None,
                    "memory": self.memory is not None}
        if encoder is not None:
            _copy_encoder(encoder, folder / ENCODER_DIR)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        (folder / "catalog.json").write_text(json.dumps(self.catalog.to_json()))
        for name, arr in self.catalog.arrays().items():
            np.save(folder / f"{name}.npy", arr)
        self.lexical.save(folder / "lexical")
        self.spell.save(folder / "spell")
        if self.dense is not None:
            self.dense.save(folder / "dense")
        if self.reranker is not None:
            self.reranker.save(folder / "reranker.txt")
        if self.memory is not None:
            self.memory.save(folder / "memory", self.catalog.item_ids)

    @classmethod
    def load(cls, folder: Path, *, embedder: Embedder | None = None) -> SearchEngine:
        folder = Path(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != "aisle-search" or manifest.get("version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: not an Aisle search index of version {FORMAT_VERSION}")
        arrays = {n: np.load(folder / f"{n}.npy") for n in ("price", "available", "popularity")}
        catalog = Catalog.from_saved(json.loads((folder / "catalog.json").read_text()), arrays)
        dense = DenseIndex.load(folder / "dense") if manifest["dense"] else None
        reranker = Reranker.load(folder / "reranker.txt") if manifest["reranker"] else None
        if dense is not None and manifest.get("encoder"):  # a fine-tuned encoder travels with its index
            embedder = (embedder or Embedder()).for_model(folder / manifest["encoder"])
        engine = cls(catalog, LexicalIndex.load(folder / "lexical"), dense, SpellIndex.load(folder / "spell"),
                     embedder=embedder, reranker=reranker, config=SearchConfig(**manifest["config"]))
        if manifest.get("memory") and dense is not None:
            engine.memory = SearchMemory.load(folder / "memory", engine.item_rows)
        return engine


def _copy_encoder(src: Path, dst: Path) -> None:
    """Copy a fine-tuned encoder folder and its ONNX exports (`<folder>-onnx`) into a search folder; nothing to do
    when they are already there (an engine saved where it was loaded from). Files are hard-linked where the file
    system allows: they are never changed once written, and a worker saves a new version every refresh, which
    would otherwise copy ~200 MB of weights each time."""
    import os
    import shutil

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    src, dst = Path(src), Path(dst)
    for a, b in ((src, dst), (src.parent / f"{src.name}-onnx", dst.parent / f"{dst.name}-onnx")):
        if a.is_dir() and a.resolve() != b.resolve():
            if b.exists():
                shutil.rmtree(b)
            shutil.copytree(a, b, copy_function=link_or_copy)


def _value_counts(catalog: Catalog) -> tuple[int, ...]:
    """How many distinct brands, categories and attribute values a catalog has (upserts only ever add)."""
    return (len(catalog.brand.values), len(catalog.category.values),
            *(len(c.values) for _, c in sorted(catalog.attributes.items())))


def _subset(cand: Candidates, idx: np.ndarray) -> Candidates:
    """The candidates at positions `idx` (ranks and per-field scores kept)."""
    return Candidates(rows=cand.rows[idx], lex=cand.lex[idx], dense=cand.dense[idx], lex_rank=cand.lex_rank[idx],
                      dense_rank=cand.dense_rank[idx], rrf=cand.rrf[idx],
                      fields={k: v[idx] for k, v in cand.fields.items()}, lex_all=cand.lex_all,
                      matched=None if cand.matched is None else cand.matched[idx], matched_all=cand.matched_all,
                      fields_all=cand.fields_all,
                      memory_rank=None if cand.memory_rank is None else cand.memory_rank[idx],
                      recollection=cand.recollection)
