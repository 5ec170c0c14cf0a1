"""Vector models behind the index: score == user . item for every such model; the Retriever serves them."""

from __future__ import annotations

import numpy as np
import pytest

from aisle.index import IndexSpec, ItemIndex, Retriever, as_vector_model, build_retriever, recall_at_k
from aisle.models.base import QueryBatch, recommend
from aisle.models.mf import ALS, BPR
from aisle.models.popularity import Popularity
from aisle.models.sequential import GRU4Rec, SASRec
from aisle.models.twotower import TwoTower
from aisle.testing.contract import planted_toy

SMALL = {"dim": 16, "layers": 1, "epochs": 2, "batch_size": 32, "progress": False, "device": "cpu", "max_len": 12}


@pytest.fixture(scope="module")
def sasrec() -> SASRec:
    return SASRec(**SMALL).fit(planted_toy().train)


@pytest.mark.parametrize("make", [
    lambda: SASRec(**SMALL), lambda: GRU4Rec(**SMALL), lambda: TwoTower(**SMALL),
    lambda: ALS(factors=8, iterations=3, num_threads=1), lambda: BPR(factors=8, iterations=5),
], ids=["sasrec", "gru4rec", "twotower", "als", "bpr"])
def test_score_is_user_vectors_dot_item_vectors(make) -> None:
    toy = planted_toy()
    model = make().fit(toy.train)
    batch = QueryBatch(np.array([toy.users[0], -1, -1]), [toy.histories[0], np.array([3, 4, 5]), np.array([])])
    vm = as_vector_model(model)
    assert vm is not None
    items = vm.item_vectors()
    assert items.shape[0] == toy.train.n_items
    np.testing.assert_allclose(vm.user_vectors(batch) @ items.T, model.score(batch), rtol=1e-4, atol=1e-4)


def test_models_without_vectors_are_not_vector_models() -> None:
    assert as_vector_model(Popularity()) is None


def test_exact_retriever_gives_the_models_own_top_n(sasrec: SASRec) -> None:
    toy = planted_toy()
    batch = QueryBatch.of_histories(toy.histories[:20])
    retriever = Retriever(sasrec, ItemIndex.build(sasrec.item_vectors(), IndexSpec(kind="exact"), threads=1))
    idx, sc = retriever.top_n(batch, 5)
    ref, ref_sc = recommend(sasrec.score(batch), 5, exclude=list(batch.histories))
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(sc, ref_sc, rtol=1e-5, atol=1e-5)
    assert idx.dtype == np.int32 and sc.dtype == np.float32


def test_retriever_never_returns_history_and_scores_only_its_depth(sasrec: SASRec) -> None:
    toy = planted_toy()
    hist = [toy.histories[0], np.arange(30)]  # the second session saw 30 of the 42 items
    retriever = Retriever(sasrec, ItemIndex.build(sasrec.item_vectors(), IndexSpec(kind="hnsw", m=8), threads=1),
                          depth=4)
    idx, _ = retriever.top_n(QueryBatch.of_histories(hist), 10)
    assert not np.isin(idx[0], hist[0]).any()
    assert len(set(idx[1].tolist())) == 10 and set(idx[1].tolist()) <= set(range(30, 42))  # unseen, as many as asked
    dense = retriever.score(QueryBatch.of_histories(hist))
    assert dense.shape == (2, toy.train.n_items)
    assert (np.isfinite(dense).sum(axis=1) == 4).all()


def test_threshold_picks_exact_below_and_ann_above(sasrec: SASRec) -> None:
    n = planted_toy().train.n_items
    small = build_retriever(sasrec, min_items=n + 1, ann=IndexSpec(kind="hnsw", m=8), threads=1)
    large = build_retriever(sasrec, min_items=n, ann=IndexSpec(kind="hnsw", m=8), threads=1)
    assert small.index.spec.kind == "exact" and large.index.spec.kind == "hnsw"
    batch = QueryBatch.of_histories(planted_toy().histories)
    assert recall_at_k(large.top_n(batch, 10)[0], small.top_n(batch, 10)[0], 10) >= 0.95


def test_recall_at_k_counts_overlap() -> None:
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 9]]), 3) == pytest.approx(2 / 3)
    assert recall_at_k(np.array([[-1, -1]]), np.array([[-1, 4]]), 2) == 0.0
    with pytest.raises(ValueError, match="number of queries"):
        recall_at_k(np.zeros((2, 3)), np.zeros((1, 3)), 3)
