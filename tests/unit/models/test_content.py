from __future__ import annotations

import numpy as np
import polars as pl

from aisle.models.base import QueryBatch, TrainData, Vocab, recommend
from aisle.models.content import ContentSimilarity, item_texts
from aisle.testing.toy import sequences_frame
from aisle.types import ITEM_SCHEMA, conform

CATALOG = conform(pl.DataFrame({
    "item_id": ["boot", "tent", "lipstick", "mascara", "new-boot", "mystery"],
    "title": ["Waterproof hiking boots", "Two-person camping tent", "Matte red lipstick", "Volumizing mascara",
              "Leather hiking boots for mountain trails", None],
    "brand": ["Trailco", "Trailco", "Glow", "Glow", "Summit", None],
    "categories": [["Outdoors", "Footwear"], ["Outdoors", "Camping"], ["Beauty", "Lips"], ["Beauty", "Eyes"],
                   ["Outdoors", "Footwear"], None],
}), ITEM_SCHEMA)


def _data() -> TrainData:
    events = sequences_frame({"u1": ["boot", "tent"], "u2": ["lipstick", "mascara"], "u3": ["lipstick"]})
    return TrainData.from_events(events, items=Vocab.of(CATALOG["item_id"].to_list()), catalog=CATALOG)


def test_item_texts_join_fields() -> None:
    texts = item_texts(CATALOG, 7)
    assert texts[0] == "Waterproof hiking boots. Trailco. Outdoors > Footwear"
    assert texts[5] == "" and texts[6] == ""


def test_cold_item_is_recommended_from_text(tmp_path) -> None:
    data = _data()
    model = ContentSimilarity().fit(data)
    boot, new_boot, mystery = 0, 4, 5
    idx, _ = recommend(model.score(QueryBatch.of_histories([[boot]])), 1, exclude=[np.array([boot])])
    assert idx[0, 0] == new_boot  # no one ever bought it: text alone puts it first
    assert np.all(model.embeddings[mystery] == 0)  # no text: neutral
    np.testing.assert_allclose(np.linalg.norm(model.embeddings[:5], axis=1), 1.0, rtol=1e-5)
    sim, _ = model.similar(np.array([new_boot, mystery]), 2)
    assert sim[0, 0] == boot and np.all(sim[1] == -1)
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "embeddings.npy").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "embeddings.npy"), model.embeddings)
