"""Real data guard: the served pipeline (the demo's fast sources) ranks better than its best fast single source on
MovieLens-100K, through the evaluation harness (leave-one-out, full ranking, combiner trained on validation
targets only, scored once on the test targets). A change to the features or the combiner that makes the
combination worse than Markov alone fails here, in seconds, before any long benchmark is run."""

from __future__ import annotations

import pytest

from aisle.cli.data import DEMO_SOURCES_FAST
from aisle.data.readers import read_dataspec
from aisle.evaluate.runner import run_experiment
from aisle.models.markov import MarkovChain
from aisle.pipeline import PipelineConfig, as_model
from tests.conftest import shared_path


@pytest.mark.realdata
def test_pipeline_beats_markov_on_ml100k() -> None:
    data = read_dataspec(f"movielens:{shared_path('movielens-100k')}")
    config = PipelineConfig().updated({"sources": DEMO_SOURCES_FAST})
    exp = run_experiment(data, {"pipeline": as_model(config), "markov": MarkovChain}, ks=(10,), max_trials=1)
    pipeline, markov = (exp.models[m].metrics["NDCG@10"] for m in ("pipeline", "markov"))
    assert pipeline > markov, f"pipeline NDCG@10 {pipeline:.4f} is not above Markov's {markov:.4f} on ML-100K"
    recall = exp.models["pipeline"].candidate_recall
    assert recall is not None and recall["recall"]["merged"]["@50"] >= exp.models["pipeline"].metrics["HR@10"]
