"""Where a store's catalog and events live. The embedded DuckDB store is the default backend."""

from aisle.store.embedded import DEFAULT_DB, Appended, Store, StoreStats

__all__ = ["DEFAULT_DB", "Appended", "Store", "StoreStats"]
