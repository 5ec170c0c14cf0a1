"""The shopper simulator: closed-loop evaluation of what the API serves, on a synthetic store whose shoppers'
true tastes are known (`world` builds the store, bundle and app; `policies` are what fills a list; `shoppers` is
how a list is looked at and acted on; `run` is the loop and its metrics)."""

from aisle.simulate.policies import (
    POLICY_NAMES,
    DeterministicPolicy,
    EpsilonPolicy,
    ExplorePolicy,
    OraclePolicy,
    Policy,
    RandomPolicy,
    Request,
    ServedPolicy,
    Slate,
    TrendingPolicy,
    make_policy,
    parse_policy,
)
from aisle.simulate.run import EVENT_LOG_SCHEMA, Arm, SimulationResult, assign, simulate
from aisle.simulate.shoppers import ShopperModel
from aisle.simulate.world import World, WorldConfig, build_world

__all__ = ["EVENT_LOG_SCHEMA", "POLICY_NAMES", "Arm", "DeterministicPolicy", "EpsilonPolicy", "ExplorePolicy",
           "OraclePolicy", "Policy", "RandomPolicy", "Request", "ServedPolicy", "ShopperModel", "SimulationResult",
           "Slate", "TrendingPolicy", "World", "WorldConfig", "assign", "build_world", "make_policy", "parse_policy",
           "simulate"]
