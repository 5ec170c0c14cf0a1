"""The "similar items" capability, as a protocol beside `Recommender` rather than inside it.

Why separate: a product page asks "what goes with this item?", which only some models can answer
(neighbourhood, factor, bought-together, content models) and popularity cannot. Code that needs it checks
`isinstance(model, ItemSimilarity)` instead of every model carrying a method that raises.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ItemSimilarity(Protocol):
    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For each item index, its k most similar other items: (indices (n, k) int64, scores (n, k) float32).

        Best first; the query item itself is never returned; rows with fewer than k answers are padded with
        index -1 and score -inf; an unknown item index (-1 or out of range) gets an all-padding row.
        """
        ...
