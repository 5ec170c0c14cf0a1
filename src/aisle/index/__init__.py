"""Approximate nearest-neighbour retrieval over any model that exposes user and item vectors.

`ItemIndex` (exact, fp16/int8 exact, HNSW and IVF variants via faiss), `Retriever` (a vector model's top-n from
an index, the Recommender protocol on top), `recall_at_k` against exact search, and `choose_index`, the
catalog-size rule serving applies (exact below a threshold, ANN above).
"""

from aisle.index.ann import ANN_KINDS, EXACT_KINDS, KINDS, IndexSpec, ItemIndex, default_nlist, faiss_threads
from aisle.index.retrieval import Retriever, build_retriever, choose_index, exact_top_k, recall_at_k
from aisle.index.vectors import VectorModel, as_vector_model, augment_items, augment_queries

__all__ = [
    "ANN_KINDS",
    "EXACT_KINDS",
    "KINDS",
    "IndexSpec",
    "ItemIndex",
    "Retriever",
    "VectorModel",
    "as_vector_model",
    "augment_items",
    "augment_queries",
    "build_retriever",
    "choose_index",
    "default_nlist",
    "exact_top_k",
    "faiss_threads",
    "recall_at_k",
]
