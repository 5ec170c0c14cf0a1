"""Where a store's catalog and events live: one interface (`StoreBackend`), two backends. `open_store(target)`
opens a DuckDB file (the embedded default, `Store`) or a `postgresql://` URL (`aisle.store.postgres`)."""

from aisle.store.base import Appended, StoreBackend, StoreStats, describe, is_postgres_url, open_store
from aisle.store.embedded import DEFAULT_DB, Store

__all__ = ["DEFAULT_DB", "Appended", "Store", "StoreBackend", "StoreStats", "describe", "is_postgres_url",
           "open_store"]
