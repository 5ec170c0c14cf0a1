"""Exploration for new and cold items: a slot policy that, on a share of recommendation lists, shows a cold item a
bandit picks (Thompson sampling or LinUCB), logs each shown item's exact propensity, never breaks the business
rules or the request's filters, and learns from the clicks (or purchases) the impression log attributes to it.

`state` is what is learned (it travels in the bundle, updated by `aisle worker`), `features` the context LinUCB
sees, `policy` the per-request choice (everything a request does not change is computed when a state loads), `learn`
the update the worker (and the simulator) runs.
"""

from aisle.explore.features import Featurizer
from aisle.explore.policy import EXPLANATION, Explored, Explorer, pool_rows
from aisle.explore.state import N_FEATURES, SURFACE, ExploreState

__all__ = ["EXPLANATION", "N_FEATURES", "SURFACE", "ExploreState", "Explored", "Explorer", "Featurizer", "pool_rows"]
