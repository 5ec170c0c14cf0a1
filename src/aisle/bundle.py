"""Versioned model bundles: everything serving needs, as plain files, with no pickled code.

A bundle is a folder:

    manifest.json        format version, Aisle/torch versions, created_at, data fingerprint, metrics,
                         and one entry per model (registry name + sub-folder)
    items.json           the item vocabulary (index -> item_id), shared by every model in the bundle
    users.json           the user vocabulary
    models/<name>/       each model's own `save()` output (JSON config + .npy/.safetensors arrays)

Loading looks each model's registry name up in `aisle.models.registry.MODELS` and calls its `load`,
so a bundle can only instantiate code that ships with Aisle. The data fingerprint (a hash of the
training events) tells which data a bundle was fit on; serving compares it on reload.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from aisle import __version__
from aisle.models.base import Recommender, Vocab

FORMAT_VERSION = 1


def fingerprint(events: pl.DataFrame) -> str:
    """A stable hash of an event log's content (order-independent): which data a bundle was fit on."""
    if events.is_empty():
        return "empty"
    cols = [c for c in ("user_id", "item_id", "event_type", "timestamp") if c in events.columns]
    rows = events.select(cols).sort(cols).write_csv(include_header=False)
    return hashlib.sha256(rows.encode()).hexdigest()[:16]


@dataclass
class Bundle:
    items: Vocab
    users: Vocab
    models: dict[str, Recommender] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path, *, data_fingerprint: str, metrics: dict[str, Any] | None = None) -> Path:
        """Write the bundle folder (atomically enough: a reader only trusts a complete manifest)."""
        out = Path(path)
        (out / "models").mkdir(parents=True, exist_ok=True)
        (out / "items.json").write_text(json.dumps(self.items.ids.tolist()))
        (out / "users.json").write_text(json.dumps(self.users.ids.tolist()))
        entries = {}
        for key, model in self.models.items():
            model.save(out / "models" / key)
            entries[key] = {"model": model.name, "path": f"models/{key}"}
        import torch

        self.manifest = {
            "format": FORMAT_VERSION,
            "aisle": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_fingerprint": data_fingerprint,
            "n_items": len(self.items),
            "n_users": len(self.users),
            "models": entries,
            "metrics": metrics or {},
        }
        tmp = out / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2))
        tmp.replace(out / "manifest.json")
        return out

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        from aisle.models.registry import MODELS

        root = Path(path)
        manifest_path = root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{root}: not an Aisle bundle (no manifest.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{root}: bundle format {manifest.get('format')} is not {FORMAT_VERSION}")
        models: dict[str, Recommender] = {}
        for key, entry in manifest["models"].items():
            if entry["model"] not in MODELS:
                raise ValueError(f"{root}: model {entry['model']!r} is not in this Aisle's registry")
            models[key] = MODELS[entry["model"]].load(root / entry["path"])
        items = Vocab.of(json.loads((root / "items.json").read_text()))
        users = Vocab.of(json.loads((root / "users.json").read_text()))
        return cls(items=items, users=users, models=models, manifest=manifest)
