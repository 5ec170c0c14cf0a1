"""Product search: query understanding, hybrid retrieval, learned reranking, facets.

Modules, in the order a request meets them: `text` (the analyzer shared by index and query), `query` (spelling,
units, synonyms, price/brand/colour/category/size intent), `spell`, `catalog` (field texts and structured
columns), `lexical` (per-field BM25, bm25s) and `dense` (MiniLM + faiss, vectors from `embed`'s cache),
`retrieve` (RRF fusion), `features` + `rerank` (LightGBM LambdaMART), `engine` (`SearchEngine`: filters, zero-result
recovery, personalisation, sorting, pagination, save/load), `results` (hits and facets), `evaluate` (offline
protocol behind `aisle search-eval`). Import `aisle.search.engine` for the API; this package imports nothing heavy.
"""
