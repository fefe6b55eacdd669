"""The versioned twin store: its port (``port``), the SQL adapter for SQLite and
PostgreSQL (``sql``), the table (``schema``) and its revisions (``migrations``)."""

from twin_engine.store.port import (
    StoredTwin,
    TwinStore,
    TwinVersion,
    state_json,
    store_key,
    stored_twin,
)
from twin_engine.store.sql import PostgresTwinStore, SqliteTwinStore, SqlTwinStore

__all__ = [
    "PostgresTwinStore",
    "SqlTwinStore",
    "SqliteTwinStore",
    "StoredTwin",
    "TwinStore",
    "TwinVersion",
    "state_json",
    "store_key",
    "stored_twin",
]
