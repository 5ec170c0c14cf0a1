"""Exploration in the closed loop: the simulator's exploring policy serves through the API, logs the API's
propensities, and its state learns between refreshes from the run's own impressions and events."""

from __future__ import annotations

import pytest

from aisle.simulate import ExplorePolicy, WorldConfig, build_world, make_policy, parse_policy, simulate


def test_an_exploring_run_logs_exact_propensities_and_learns() -> None:
    with build_world(WorldConfig(n_items=150, n_users=80, n_events=3_000, seed=2, new_items=15)) as world:
        policy = make_policy("explore:thompson:1", world, seed=2)
        assert isinstance(policy, ExplorePolicy) and policy.name == "explore:thompson"
        res = simulate(world, policy, 80, k=8, seed=2, batch=4)
        state = world.services.runtime.explore_state
    imp = res.impressions
    assert imp.height == 80 * 8
    # every list explored (share 1): its slot (position 3) holds an item without events (old ones never bought,
    # then the launched ones too) whose propensity is a share of draws
    slot = imp.filter(imp["position"] == 3)
    assert slot.height == 80 and (slot["propensity"] < 1).all() and (slot["propensity"] > 0).all()
    assert slot["item_id"].is_in(list(world.arrivals)).any()
    assert (imp.filter(imp["position"] != 3)["propensity"] == 1).all()  # the rest: the same list either way
    assert state.updates == 80 // 20 and state.shown.sum() > 0
    m = res.metrics[policy.name]
    assert m["new_item_coverage"] > 0


@pytest.mark.parametrize("name", ["explore:", "explore:ucb", "explore:thompson:0", "explore:linucb:x"])
def test_bad_exploring_policy_names_say_what_is_accepted(name: str) -> None:
    with pytest.raises(ValueError, match="explore:"):
        parse_policy(name)
