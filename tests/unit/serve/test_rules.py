"""Business rules over ranked candidates."""

from __future__ import annotations

import numpy as np

from aisle.config import Pin, RulesConfig
from aisle.query import Filters
from aisle.rules import ItemAttributes, apply_rules

# items 0..7: brands A A A B B C C C, leaves x x y y x y z z, item 5 unavailable
ATTRS = ItemAttributes(brand=np.array([0, 0, 0, 1, 1, 2, 2, 2], np.int32),
                       leaf=np.array([0, 0, 1, 1, 0, 1, 2, 2], np.int32),
                       price=np.array([5, 10, 20, 30, 40, 50, 60, np.nan]), available=np.array([1, 1, 1, 1, 1, 0, 1, 1],
                                                                                               bool),
                       brand_names=["A", "B", "C"], leaf_names=["x", "y", "z"],
                       paths=[("Top", "x"), ("Top", "x"), ("Top", "y"), ("Top", "y"), ("Top", "x"), ("Other", "y"),
                              ("Other", "z"), ("Other", "z")])
INDEX = {f"i{i}": i for i in range(8)}
ROWS = np.arange(8)
SCORES = np.array([8, 7, 6, 5, 4, 3, 2, 1], float)


def pick(rules: RulesConfig, k: int = 8, **kw: object) -> list[int]:
    return apply_rules(ROWS, SCORES, k, attrs=ATTRS, rules=rules, index=INDEX, **kw).rows.tolist()  # type: ignore[arg-type]


def test_exclusions_availability_and_filters() -> None:
    assert pick(RulesConfig()) == [0, 1, 2, 3, 4, 6, 7]
    assert pick(RulesConfig(only_available=False), exclude=[0, 3]) == [1, 2, 4, 5, 6, 7]
    assert pick(RulesConfig(), filters=Filters(categories=["other"])) == [6, 7]
    assert pick(RulesConfig(), filters=Filters(brands=["b"], price_max=35)) == [3]
    assert pick(RulesConfig(), filters=Filters(exclude_brands=["a", "C"])) == [3, 4]  # "not that brand"
    assert Filters(brands=["A"]).merged(Filters(exclude_brands=["B"])).exclude_brands == ["B"]


def test_max_per_brand_diversity_boosts_and_pins() -> None:
    assert pick(RulesConfig(max_per_brand=1)) == [0, 3, 6]
    diverse = pick(RulesConfig(diversity=1.0), k=3)
    assert len({int(ATTRS.leaf[i]) for i in diverse}) == 3
    assert pick(RulesConfig(boost_brands={"C": 2.0}), k=2) == [6, 7]
    sel = apply_rules(ROWS, SCORES, 4, attrs=ATTRS, rules=RulesConfig(pins=(Pin(item_id="i7", position=2),
                                                                            Pin(item_id="i5", position=1))),
                      index=INDEX)
    assert sel.rows.tolist() == [0, 7, 1, 2] and sel.pinned.tolist() == [False, True, False, False]


def test_a_selected_list_moves_an_entry_up_and_takes_one_in_keeping_its_scores_in_order() -> None:
    chosen = apply_rules(ROWS, SCORES, 6, attrs=ATTRS, rules=RulesConfig(), index=INDEX)
    assert chosen.rows.tolist() == [0, 1, 2, 3, 4, 6]
    up = chosen.moved(5, 2)  # item 6 to the third place: the ones between shift down, it shows the displaced score
    assert up.rows.tolist() == [0, 1, 6, 2, 3, 4]
    assert up.scores.tolist() == [8, 7, 6, 6, 5, 4]
    assert up.positions.tolist() == [0, 1, 6, 2, 3, 4] and not up.pinned.any()
    assert chosen.moved(1, 3) is chosen  # already higher: unchanged
    new = chosen.inserted(1, 7, 7.0, False, 7, 6)  # put second, the list keeps its length
    assert new.rows.tolist() == [0, 7, 1, 2, 3, 4] and new.scores.tolist() == [8, 7, 7, 6, 5, 4]
    assert new.positions.tolist() == [0, 7, 1, 2, 3, 4]
