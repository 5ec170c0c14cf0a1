"""The ranker learned from impressions: LightGBM LambdaMART over the same named feature frame as the combiner, but
taught by what shoppers were shown and did (`aisle.implearn` builds its training lists from the impression log).

Why a second ranker beside the combiner: the combiner learns from next-item hold-outs, so it never sees an item
that was shown and ignored; this one has a list per served request, graded labels (purchase > cart > click >
nothing) and the ignored items as negatives.

Position bias: a click depends on whether the shopper looked at the position, so the pairs are weighted by inverse
examination propensities estimated from the log itself: LightGBM's unbiased LambdaMART (Hu et al. 2019, the
`position` of each row given to the Dataset) learns one bias per position for clicked and for ignored rows
together with the trees, and divides each pair's gradient by them. Pairs, not rows, is the point: weighting only
the clicked rows still lets every unexamined, ignored item at a low position push its features down. Serving needs
nothing about positions, which is why weights were chosen over position as a feature (a tree ensemble can split on
a position feature inside every interaction, and what it does at the fixed serving value is then untested).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aisle.pipeline.combiner import LGB_PARAMS
from aisle.pipeline.features import FeatureFrame

IMPRESSIONS = "impressions"
PARAMS: dict[str, Any] = {**LGB_PARAMS, "min_data_in_leaf": 20, "lambdarank_truncation_level": 20}


class ImpressionRanker:
    """Scores candidate rows; `facts` records what it was trained from (labelled lists, rows, clicked rows, the time
    span of the log, whether positions were corrected for)."""

    def __init__(self, names: tuple[str, ...], booster: Any, facts: dict[str, Any]) -> None:
        self.names, self.booster, self.facts = tuple(names), booster, dict(facts)

    @classmethod
    def fit(cls, frame: FeatureFrame, labels: np.ndarray, sizes: np.ndarray, positions: np.ndarray | None, *,
            rounds: int = 100, seed: int = 0, facts: dict[str, Any] | None = None) -> ImpressionRanker:
        """LambdaMART on consecutive lists of `sizes` rows with graded `labels`; `positions` (1-based, where each
        row was shown) turn the position-bias correction on (None: clicks taken at face value, for comparison)."""
        import lightgbm as lgb

        if not len(sizes) or not (labels > 0).any():
            raise ValueError("no list with a click to learn from")
        data = lgb.Dataset(frame.values, labels, group=np.asarray(sizes).tolist(), feature_name=list(frame.names),
                           position=None if positions is None else np.asarray(positions, np.int32) - 1)
        booster = lgb.train({**PARAMS, "seed": seed}, data, num_boost_round=rounds)
        return cls(frame.names, booster, {"rounds": rounds, **(facts or {})})

    def score(self, frame: FeatureFrame) -> np.ndarray:
        if frame.names != self.names:
            raise ValueError("the impression ranker was trained on other features than this pipeline computes "
                             f"({len(self.names)} vs {len(frame.names)} columns); train it again")
        if not len(frame.values):
            return np.zeros(0)
        return np.asarray(self.booster.predict(frame.values, num_threads=1), np.float64)

    def importance(self) -> dict[str, float]:
        """Total gain per feature, largest first (what it learned to trust)."""
        gain = self.booster.feature_importance("gain")
        order = np.argsort(-gain)
        return {self.names[i]: float(gain[i]) for i in order if gain[i] > 0}

    def save(self, path: Path) -> None:
        """One JSON file, the LightGBM model inside as its text format (bundles hold only JSON and arrays)."""
        path.mkdir(parents=True, exist_ok=True)
        (path / "ranker.json").write_text(json.dumps({"names": list(self.names), "facts": self.facts,
                                                      "lightgbm": self.booster.model_to_string()}))

    @classmethod
    def load(cls, path: Path) -> ImpressionRanker:
        import lightgbm as lgb

        meta = json.loads((path / "ranker.json").read_text())
        return cls(tuple(meta["names"]), lgb.Booster(model_str=meta["lightgbm"]), meta["facts"])


__all__ = ["IMPRESSIONS", "ImpressionRanker"]
