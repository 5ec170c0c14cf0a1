"""Train SASRec on a small planted-sequence log; rank 0 prints the validation result as JSON.

Run alone (`python worker.py OUT`) or under `torchrun --nproc_per_node=2 worker.py OUT`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

from aisle.models.base import TrainData
from aisle.models.sequential import SASRec
from aisle.train.distributed import DistContext


def planted_log(n_users: int = 400, n_items: int = 60, length: int = 8, seed: int = 0) -> pl.DataFrame:
    """Users walk item chains (i -> i+1 mod n) from random starts, with a little noise: learnable order."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for k in range(length):
            item = (start + k) % n_items if rng.random() > 0.1 else int(rng.integers(n_items))
            users.append(str(u))
            items.append(str(item))
            ts.append(k)
    return pl.DataFrame({"user_id": users, "item_id": items, "event_type": "purchase",
                         "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")), "value": None},
                        schema_overrides={"value": pl.Float64})


def main() -> None:
    out = Path(sys.argv[1])
    ctx = DistContext.from_env("cpu")
    data = TrainData.from_events(planted_log())
    model = SASRec(epochs=8, dim=32, layers=1, dropout=0.1, batch_size=64, lr=3e-3, warmup_steps=0,
                   progress=False, patience=100, seed=0, device="cpu", use_features=False, holdout=True,
                   schedule="constant")
    model.fit(data)
    if ctx.is_main:
        result = model.result
        assert result is not None
        out.write_text(json.dumps({"world_size": ctx.world_size, "best": result.best_metric,
                                   "history": result.history}))
    ctx.close()


if __name__ == "__main__":
    main()
