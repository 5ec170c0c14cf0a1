"""How a simulated shopper reacts to a list: examine by position, then click, cart and buy by true utility.

The position-based model (Craswell et al. 2008): the item at position p is looked at with probability
`(1 / p) ** examination` whatever else is on the list, and a looked-at item is clicked with a probability set by
how much the shopper wants it (`aisle.data.synthetic.Tastes.affinity`, the log-odds the store's own carts were
drawn from). A click becomes a cart and a cart a purchase with probabilities that rise with the same utility.
Everything is a closed form, so the oracle's expected clicks (and so the regret) are exact, not sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, slots=True)
class ShopperModel:
    """The rates of the funnel; the defaults give a few percent clicks per shown item on a pipeline's list."""

    examination: float = 1.0  # exponent of the position decay
    click_bias: float = -1.5  # log-odds of a click on an examined item of utility 0
    cart_bias: float = -1.0  # log-odds of a cart after a click
    buy_bias: float = -0.4  # log-odds of buying a carted item (utility counts half)

    def examine(self, k: int) -> np.ndarray:
        """(k,) probability that each position is looked at."""
        return (1.0 / np.arange(1, k + 1)) ** self.examination

    def click_probability(self, utility: np.ndarray) -> np.ndarray:
        """Probability of a click on an item at each position, examination included; `utility` is (..., k)."""
        return self.examine(utility.shape[-1]) * _sigmoid(self.click_bias + utility)

    def react(self, utility: np.ndarray, rng: np.random.Generator, conversion_lift: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clicked, carted and bought masks for lists whose items have `utility` (rounds, k). `conversion_lift`
        multiplies the chance that a cart is bought (an experiment's planted effect)."""
        clicked = rng.random(utility.shape) < self.click_probability(utility)
        carted = clicked & (rng.random(utility.shape) < _sigmoid(self.cart_bias + utility))
        buy = np.minimum(1.0, _sigmoid(self.buy_bias + 0.5 * utility) * (1.0 + conversion_lift))
        bought = carted & (rng.random(utility.shape) < buy)
        return clicked, carted, bought
