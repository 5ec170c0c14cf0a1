"""Reports: JSON round trip, Markdown tables per cut-off, a real PNG chart, the terminal table, sampled labels."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from aisle.evaluate.report import comparison_table, markdown, metric_names, params_summary, write_json, write_report

REPORT = {
    "dataset": "Beauty", "protocol": "loo", "n_users": 22363, "n_items": 12101,
    "split": {"train_events": 153776, "valid_targets": 22363, "test_targets": 22363},
    "select_metric": "NDCG@10", "seed": 0,
    "models": {
        "pop": {"HR@10": 0.0135, "NDCG@10": 0.0061, "HR@20": 0.0217, "NDCG@20": 0.0082, "MRR": 0.006, "AUC": 0.646,
                "Coverage@10": 0.0013, "fit_seconds": 0.01, "eval_seconds": 1.5, "params": {"weighted": False},
                "trials": []},
        "itemknn": {"HR@10": 0.0521, "NDCG@10": 0.0301, "HR@20": 0.07, "NDCG@20": 0.035, "MRR": 0.03, "AUC": 0.8,
                    "Coverage@10": 0.4, "fit_seconds": 2.0, "eval_seconds": 3.0, "params": {"k": 100}},
    },
}


def test_metric_names_skip_timings_and_params() -> None:
    assert metric_names(REPORT) == ["HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "AUC", "Coverage@10"]


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "r.json"
    write_json(REPORT, path)
    assert json.loads(path.read_text()) == REPORT


def test_markdown_has_a_table_per_cutoff_and_marks_the_best(tmp_path: Path) -> None:
    md_path, png = write_report(REPORT, tmp_path / "report.md")
    text = md_path.read_text()
    assert "| model | HR@10 | NDCG@10 | Coverage@10 |" in text
    assert "| model | HR@20 | NDCG@20 |" in text
    assert "| model | MRR | AUC |" in text
    assert "| itemknn | **0.0521** | **0.0301** |" in text and "| pop | 0.0135 | 0.0061 |" in text
    assert "full ranking over all items" in text and "![metrics](report.png)" in text
    assert png == tmp_path / "report.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_sampled_reports_say_so() -> None:
    sampled = {**REPORT, "sampled": 100,
               "models": {"pop": {"HR@10 (sampled-100)": 0.4, "NDCG@10 (sampled-100)": 0.2, "params": {}}}}
    assert "100 sampled negatives per target" in markdown(sampled)
    console = Console(record=True, width=200)
    console.print(comparison_table(sampled))
    assert "(sampled-100)" in console.export_text()


def test_terminal_table_lists_models_and_headline_metrics() -> None:
    console = Console(record=True, width=200)
    console.print(comparison_table(REPORT))
    text = console.export_text()
    for word in ("pop", "itemknn", "HR@10", "NDCG@20", "MRR", "AUC", "Coverage@10", "0.0521", "eval seconds"):
        assert word in text
    assert "unranked" not in text  # every target could be ranked: no row, no note
    assert params_summary(REPORT) == "pop: weighted=False\nitemknn: k=100"
