"""`aisle search-eval` end to end: a tiny hand-made judged file (always) and a Home Depot subset (real data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisle.cli import app
from tests.conftest import shared_path

runner = CliRunner()

PRODUCTS = {
    "1": "Delta Vero single handle shower faucet in chrome", "2": "Delta 3-Setting shower head in chrome",
    "3": "KOHLER elongated toilet seat in white", "4": "KOHLER round toilet seat in biscuit",
    "5": "Philips 60-Watt equivalent A19 LED light bulb", "6": "GE 100-Watt incandescent light bulb",
    "7": "BEHR Premium 1 gal. deck stain", "8": "BEHR DeckOver 5 gal. wood and concrete coating",
    "9": "Simpson Strong-Tie 12-gauge angle bracket", "10": "Everbilt 4 in. zinc L bracket",
    "11": "Husky 20 in. tool box", "12": "DEWALT 20V cordless drill", "13": "Milwaukee M12 heated jacket",
    "14": "Hampton Bay 52 in. ceiling fan with light", "15": "Glacier Bay bathroom vanity with top",
}
JUDGED = [
    ("shower faucet", "1", 3), ("shower faucet", "2", 2.33), ("shower faucet", "14", 1),
    ("toliet seat", "3", 3), ("toliet seat", "4", 2.67), ("toliet seat", "15", 1.33),
    ("60 watt bulb", "5", 3), ("60 watt bulb", "6", 2), ("60 watt bulb", "14", 1.33),
    ("deck stain", "7", 3), ("deck stain", "8", 2.67), ("deck stain", "11", 1),
    ("l bracket", "10", 3), ("l bracket", "9", 2.33), ("l bracket", "12", 1),
    ("cordless drill", "12", 3), ("cordless drill", "11", 1.67), ("cordless drill", "13", 1.33),
    ("ceiling fan", "14", 3), ("ceiling fan", "5", 1.33), ("ceiling fan", "6", 1),
    ("bathroom vanity", "15", 3), ("bathroom vanity", "3", 1.67), ("bathroom vanity", "1", 1.33),
]


def _write(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    lines = ["id,product_uid,product_title,search_term,relevance"]
    lines += [f'{i},{p},"{PRODUCTS[p]}",{q},{r}' for i, (q, p, r) in enumerate(rows, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="iso-8859-1")
    return path


def test_search_eval_on_a_tiny_judged_file(tmp_path: Path) -> None:
    csv = _write(tmp_path / "judged.csv", JUDGED)
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["search-eval", f"homedepot:{csv}", "--no-dense", "--folds", "2", "--json", str(out),
                                 "--save", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert (res["queries"], res["products"]) == (8, 15)
    assert set(res["systems"]) == {"bm25", "hybrid", "aisle"}
    for m in res["systems"].values():
        assert 0.0 <= m["ndcg@10"] <= 1.0 and 0.0 <= m["recall@100"] <= 1.0
    assert res["systems"]["hybrid"]["ndcg@10"] > 0.5 and res["protocol"]["folds"] == 2
    assert "NDCG@10" in result.output
    from aisle.search.engine import SearchEngine

    engine = SearchEngine.load(tmp_path / "idx")  # reranker fitted on all queries, saved with the index
    assert engine.reranker is not None
    hits = engine.search("toliet seat").hits
    assert {h.item_id for h in hits[:2]} == {"3", "4"}


def test_search_eval_holdout_scores_only_the_held_out_fifth(tmp_path: Path) -> None:
    """The default protocol: fusion and reranker fitted on 80% of the queries, every figure on the fixed other 20%
    ("60 watt bulb" and "ceiling fan" hash to fold 0), with per-retriever recall and per-type rows."""
    csv = _write(tmp_path / "judged.csv", JUDGED)
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["search-eval", f"homedepot:{csv}", "--no-dense", "--json", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["protocol"]["name"] == "holdout" and res["scored_queries"] == 2
    assert res["systems"]["aisle"]["queries_ndcg"] == 2
    assert res["protocol"]["reranker"].startswith("fitted on 6 queries")
    assert {"lexical", "fused", "bm25:title"} <= set(res["retrievers"])
    for m in res["retrievers"].values():
        assert m["recall@100"] <= m["recall@200"]
    assert res["types"]["all"]["queries"] == 2 and res["types"]["unit"]["queries"] == 1  # "60 watt bulb"
    assert res["fusion"]["tuned"] and res["fusion"]["on"] == "6 fitted queries"
    assert "per query type" in result.output


def test_search_eval_reports_the_fusion_recall_slack_and_rejects_a_negative_one(tmp_path: Path) -> None:
    csv = _write(tmp_path / "judged.csv", JUDGED)
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["search-eval", f"homedepot:{csv}", "--no-dense", "--fusion-recall-slack", "0.01",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["fusion"]["recall_slack"] == 0.01
    result = runner.invoke(app, ["search-eval", f"homedepot:{csv}", "--fusion-recall-slack", "-1"])
    assert result.exit_code == 2 and "--fusion-recall-slack" in result.output and "Traceback" not in result.output


def test_search_eval_rejects_a_missing_encoder(tmp_path: Path) -> None:
    csv = _write(tmp_path / "judged.csv", JUDGED)
    result = runner.invoke(app, ["search-eval", f"homedepot:{csv}", "--encoder", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "--encoder" in result.output and "Traceback" not in result.output


def test_search_eval_with_separate_training_file_and_catalog(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", JUDGED[:12])
    test = _write(tmp_path / "test.csv", JUDGED[12:])
    catalog = _write(tmp_path / "catalog.csv", [("any", p, 2.0) for p in PRODUCTS])
    out = tmp_path / "res.json"
    result = runner.invoke(app, ["search-eval", f"homedepot:{test}", "--train", f"homedepot:{train}", "--catalog",
                                 f"homedepot:{catalog}", "--no-dense", "--json", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert (res["queries"], res["products"]) == (4, 15)  # the whole catalog, not only the judged products
    assert res["protocol"]["reranker"].startswith("trained on homedepot:")


def test_search_eval_rejects_a_source_without_judgments(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search-eval", f"homedepot:{tmp_path / 'missing.csv'}"])
    assert result.exit_code == 2


@pytest.mark.realdata
@pytest.mark.slow
def test_search_eval_home_depot_subset_beats_bm25(tmp_path: Path) -> None:
    """300 real queries, catalog = their judged products plus random others (2,500 in all), 5-fold CV (every query
    scored: the held-out fifth of 300 would be too few for these margins)."""
    path = shared_path("homedepot-search-relevance/train_dev.csv.gz")
    out = tmp_path / "hd.json"
    result = runner.invoke(app, ["search-eval", f"homedepot:{path}", "--sample-queries", "300",
                                 "--catalog-size", "2500", "--protocol", "cv", "--json", str(out)])
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert (res["queries"], res["products"]) == (300, 2500)
    bm25, hybrid, aisle = (res["systems"][k] for k in ("bm25", "hybrid", "aisle"))
    assert bm25["queries_ndcg"] == aisle["queries_ndcg"] > 250
    assert hybrid["recall@100"] > bm25["recall@100"]
    assert aisle["ndcg@10"] > bm25["ndcg@10"] + 0.03
