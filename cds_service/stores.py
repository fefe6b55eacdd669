"""The stores the settings name, opened in one place for the app and the audit commands."""

from __future__ import annotations

from cds_service.settings import Settings
from twin_engine.store import PostgresTwinStore, SqliteTwinStore, TwinStore


def open_twin_store(settings: Settings) -> TwinStore:
    """PostgreSQL when configured (replicas share twin versions), else SQLite."""
    if settings.database_url:
        return PostgresTwinStore(settings.database_url)
    return SqliteTwinStore(settings.twin_db)
