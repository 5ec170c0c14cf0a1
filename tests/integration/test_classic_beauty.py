"""Real data: a classic model beats the published GRU4Rec row on Amazon Beauty (full ranking, leave-one-out).

The protocol of ../shared/data/amazon-s3rec/README.md: fit on train + validation targets, rank all 12,101 items
for each user's test target with history = split.history("test"), the history's items excluded.
`benchmarks/classic.py` runs every classic model through `aisle evaluate`, with hyper-parameters chosen on validation.
"""

from __future__ import annotations

import numpy as np
import pytest

from aisle.data.readers import read_dataspec
from aisle.data.splits import leave_one_out
from aisle.models.base import QueryBatch, TrainData, Vocab
from aisle.models.markov import MarkovChain
from tests.conftest import shared_path

GRU4REC_NDCG10 = 0.0137  # published full-ranking GRU4Rec row (S3-Rec paper, CIKM 2020)


@pytest.mark.realdata
def test_markov_beats_published_gru4rec_on_beauty() -> None:
    data = read_dataspec(f"s3rec:{shared_path('amazon-s3rec/Beauty.txt')}")
    split = leave_one_out(data.events)
    items = Vocab.of(data.events["item_id"].unique(maintain_order=True).to_list())
    history = TrainData.from_events(split.history("test"), items=items)
    assert history.n_items == 12_101
    model = MarkovChain().fit(history)  # no test target reaches fit: history("test") stops before it
    users = history.users.encode(split.test["user_id"].to_list())
    targets = history.items.encode(split.test["item_id"].to_list())
    seqs = history.sequences()
    ndcg = 0.0
    for start in range(0, len(users), 4096):
        u, t = users[start:start + 4096], targets[start:start + 4096]
        hist = [seqs[i] for i in u]
        scores = model.score(QueryBatch(u, hist))
        scores[np.repeat(np.arange(len(u)), [len(h) for h in hist]), np.concatenate(hist)] = -np.inf
        target = scores[np.arange(len(u)), t][:, None]
        rank = (scores > target).sum(1) + ((scores == target) & (np.arange(scores.shape[1]) < t[:, None])).sum(1)
        ndcg += (1.0 / np.log2(rank[rank < 10] + 2.0)).sum()
    ndcg /= len(users)
    assert ndcg > GRU4REC_NDCG10, f"Markov NDCG@10 {ndcg:.4f} does not beat GRU4Rec's {GRU4REC_NDCG10}"
    assert ndcg > 0.05, f"Markov NDCG@10 {ndcg:.4f} on Beauty regressed (measured 0.0557 with the defaults)"
