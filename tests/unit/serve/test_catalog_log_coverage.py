"""How far the Redis upsert log may be trimmed when the registry holds versions of both kinds: those `aisle worker`
published (their coverage recorded) and one published by hand (none recorded: its catalog decides)."""

from __future__ import annotations

from pathlib import Path

from aisle.bundle import Bundle
from aisle.models.base import Vocab
from aisle.registry import Decision, Registry
from aisle.serve.catalog_log import CatalogLog, registry_coverage
from aisle.serve.runtime import upsert_frame


def _rec(item: str, title: str) -> dict:
    return {"item_id": item, "title": title, "price": 1.0, "categories": ["x"], "attributes": "{}"}


def _publish(registry: Registry, tmp: Path, name: str, records: list[dict], extra: dict) -> None:
    catalog = upsert_frame(records)
    Bundle(items=Vocab.of(catalog["item_id"].to_list()), users=Vocab.of([]), catalog=catalog).save(
        tmp / name, data_fingerprint=name)
    registry.publish(tmp / name, Decision("manual" if not extra else "refit", True, name, extra=extra))


def test_a_version_published_by_hand_is_judged_by_its_catalog(tmp_path: Path) -> None:
    log = CatalogLog(base=2, version=5, batches=[[_rec("a", "A")], [_rec("b", "B")], [_rec("c", "C")]])
    registry = Registry(tmp_path / "registry", keep=5)
    _publish(registry, tmp_path, "fitted", [_rec("a", "A"), _rec("b", "B"), _rec("c", "C")], {"catalog_version": 5})
    assert registry_coverage(registry.list(), log) == 5

    # by hand, holding batches 3 and 4 but not 5: the log may lose 3 and 4 (it once could lose nothing)
    _publish(registry, tmp_path, "hand", [_rec("a", "A"), _rec("b", "B")], {})
    assert registry_coverage(registry.list(), log) == 4

    # by hand, with an older title of "a": it carries none of the log; it vouches for nothing already trimmed
    _publish(registry, tmp_path, "stale", [_rec("a", "old A"), _rec("b", "B"), _rec("c", "C")], {})
    assert registry_coverage(registry.list(), log) == 2
