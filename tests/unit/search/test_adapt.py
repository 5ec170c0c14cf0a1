"""Domain adaptation of the dense encoder: training pairs, the fine-tune, and an encoder travelling with its index."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from aisle.data.synthetic import SyntheticConfig, generate
from aisle.search import evaluate as ev
from aisle.search.adapt import AdaptSettings, adapt_engine, engine_lexical, finetune_encoder, training_pairs
from aisle.search.embed import MODEL_NAME, Embedder
from aisle.search.engine import SearchEngine

# one xdist worker for the module: its module-scoped fixture is then built once, not once per worker
pytestmark = pytest.mark.xdist_group("unit_adapt")

# a fine-tune of two small steps: what is checked is the plumbing and determinism, not quality (the integration
# test and benchmarks/search_adapt.py measure that)
TINY = AdaptSettings(batch_size=16, max_pairs=32, min_pairs=8, max_seq_length=16, seed=1)


@pytest.fixture(scope="module")
def shop():
    return generate(SyntheticConfig(n_items=150, n_users=80, n_events=4_000, seed=5))


@pytest.fixture(scope="module")
def lexical_engine(shop):
    return SearchEngine.build(shop.items, dense=False)


@pytest.fixture(scope="module")
def texts(lexical_engine):
    cat = lexical_engine.catalog
    return {cat.item_ids[i]: cat.embedding_text(i) for i in range(len(cat))}


@pytest.fixture(scope="module")
def pairs(shop, texts, lexical_engine):
    return training_pairs(ev.judgments_from_events(shop.events), texts, engine_lexical(lexical_engine), TINY)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, pairs):
    return finetune_encoder(pairs, tmp_path_factory.mktemp("enc") / "encoder", TINY, progress=False)


def test_pairs_take_positives_and_mine_negatives_that_are_not_positives(texts, lexical_engine):
    ids = list(texts)
    hits = engine_lexical(lexical_engine)
    query = texts[ids[0]].split(" | ")[0].lower()  # a title as a query: BM25 ranks that item and its kin first
    top = list(hits(query, 10))
    assert top, "the title's own words must find something"
    judged_low = next(i for i in top if i != ids[0])
    judgments = pl.DataFrame({"query": [query, query, query, query, "other words"],
                              "item_id": [ids[0], judged_low, ids[2], "not-in-catalog", ids[3]],
                              "relevance": [3.0, 1.0, 2.0, 3.0, 2.0]})
    settings = AdaptSettings(hard_negatives=2, min_pairs=1)
    out = training_pairs(judgments, texts, hits, settings)
    # one positive: relevance 2.0 (a view) is below positive_at, and an item with no text cannot be trained on
    assert [(p.query, p.positive) for p in out] == [(query, texts[ids[0]])]
    negatives = out[0].negatives
    assert len(negatives) == 2
    assert negatives[0] == texts[judged_low], "an item judged irrelevant that BM25 finds is the first hard negative"
    assert texts[ids[0]] not in negatives
    assert training_pairs(judgments, texts, hits, replace(settings, hard_negatives=0))[0].negatives == ()


def test_pairs_are_capped_by_a_seeded_sample(shop, texts, lexical_engine):
    judgments = ev.judgments_from_events(shop.events)
    hits = engine_lexical(lexical_engine)
    everything = training_pairs(judgments, texts, hits, replace(TINY, max_pairs=None))
    assert len(everything) == judgments.filter(pl.col("relevance") >= TINY.positive_at).height
    a = training_pairs(judgments, texts, hits, replace(TINY, max_pairs=20))
    b = training_pairs(judgments, texts, hits, replace(TINY, max_pairs=20))
    c = training_pairs(judgments, texts, hits, replace(TINY, max_pairs=20, seed=2))
    assert len(a) == 20 and a == b and a != c
    assert all(len(p.negatives) == TINY.hard_negatives for p in everything)


def test_too_few_pairs_fine_tune_nothing(tmp_path, pairs, lexical_engine, shop):
    with pytest.raises(ValueError, match="fewer than min_pairs=1000"):
        finetune_encoder(pairs, tmp_path / "enc", replace(TINY, min_pairs=1000))
    assert not (tmp_path / "enc").exists()
    engine = SearchEngine(lexical_engine.catalog, lexical_engine.lexical, None, lexical_engine.spell)
    same, how = adapt_engine(engine, ev.judgments_from_events(shop.events), TINY, cache_dir=tmp_path)
    assert same is engine and not how.adapted and "dense search is off" in how.reason


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="invalid adaptation settings"):
        AdaptSettings(batch_size=1)


def _weights(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_fine_tune_is_deterministic_under_its_seed_and_moves_the_encoder(tmp_path, pairs, encoder):
    again = finetune_encoder(pairs, tmp_path / "again", TINY, progress=False)
    assert _weights(again) == _weights(encoder)
    ft, packaged = Embedder(None, model_path=encoder), Embedder(None)
    assert ft.model_name == Embedder(None, model_path=again).model_name != packaged.model_name
    assert ft.model_name.startswith(f"{MODEL_NAME}-ft-")
    q = "waterproof hiking boots"
    assert not np.allclose(ft.embed_query(q), packaged.embed_query(q), atol=1e-4)
    assert np.isclose(np.linalg.norm(ft.embed_query(q)), 1.0, atol=1e-5)


def test_two_encoders_never_share_cached_vectors(tmp_path, encoder):
    text = ["Trailhound waterproof hiking boots"]
    packaged = Embedder(tmp_path).embed_texts(text)
    ft = Embedder(tmp_path, model_path=encoder).embed_texts(text)
    assert not np.allclose(packaged, ft, atol=1e-4)
    # read back from the one cache folder, each encoder gets its own vector
    assert np.array_equal(Embedder(tmp_path).embed_texts(text), packaged)
    assert np.array_equal(Embedder(tmp_path, model_path=encoder).embed_texts(text), ft)


def test_an_adapted_index_carries_its_encoder(tmp_path, shop, encoder):
    packaged = Embedder(tmp_path / "cache")
    engine = SearchEngine.build(shop.items, embedder=packaged)
    adapted = engine.with_encoder(packaged.for_model(encoder))
    assert adapted.encoder_name == Embedder(None, model_path=encoder).model_name != engine.encoder_name
    adapted.save(tmp_path / "search")
    assert (tmp_path / "search" / "encoder" / "modules.json").exists()
    # loaded with the server's (packaged) embedder, queries are still encoded by the fine-tuned weights
    loaded = SearchEngine.load(tmp_path / "search", embedder=packaged)
    assert loaded.encoder_name == adapted.encoder_name
    q = "hiking boots"
    assert np.allclose(loaded.embedder.embed_query(q), adapted.embedder.embed_query(q), atol=1e-6)
    assert [h.item_id for h in loaded.search(q).hits] == [h.item_id for h in adapted.search(q).hits]
    # a changed catalog (a worker's refresh) is re-indexed with the same encoder, whatever embedder is offered
    again = loaded.with_catalog(shop.items.head(100), embedder=packaged)
    assert again.encoder_name == adapted.encoder_name


def test_the_onnx_query_encoder_serves_the_fine_tuned_weights(tmp_path, encoder):
    from aisle.optimize.onnx import INT8_TAG
    from aisle.optimize.textenc import OnnxEmbedder, export_encoder_onnx

    folder = export_encoder_onnx(encoder)
    name = Embedder(None, model_path=encoder).model_name
    assert sorted(p.name for p in folder.glob("*.onnx")) == [f"{name}-{INT8_TAG}.onnx", f"{name}.onnx"]
    torch_vec = Embedder(None, model_path=encoder).embed_query("cordless drill 18v")
    for int8, close in ((False, 0.9999), (True, 0.95)):
        onnx = OnnxEmbedder(None, int8=int8, onnx_dir=tmp_path / "elsewhere").for_model(encoder)
        vec = onnx.embed_query("cordless drill 18v")
        assert onnx.encoder is not None, "the ONNX path must serve, not fall back to PyTorch"
        assert float(vec @ torch_vec) > close
    assert not (tmp_path / "elsewhere").exists(), "the exports beside the encoder are used, not re-exported"
