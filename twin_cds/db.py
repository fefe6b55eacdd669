"""The four stores' schemas for ``twin-cds db``: which revision each database is at
(``current``) and bringing each to this release's head (``upgrade``).

Each store keeps its own revisions (``twin_engine/store/migrations``,
``cds_service/audit/migrations``, ``cds_service/http/migrations``,
``smart_app/migrations``) and its own version table, in its own SQLite file under the
data directory or side by side in the one PostgreSQL database of
``TWIN_CDS_DATABASE_URL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cds_service.audit.schema import SCHEMA as AUDIT
from cds_service.http.replay_cache import SCHEMA as REPLAY
from cds_service.settings import Settings
from smart_app.sessions import SCHEMA as SESSIONS
from twin_engine.storage import StorageUnavailable
from twin_engine.store.db import Database, sqlite_url
from twin_engine.store.migrate import StoreSchema, describe, upgrade
from twin_engine.store.schema import SCHEMA as TWINS

STORES = (TWINS, AUDIT, REPLAY, SESSIONS)


def store_url(settings: Settings, schema: StoreSchema) -> str:
    """Where a store lives: the PostgreSQL database when configured, else its SQLite file."""
    if settings.database_url:
        return settings.database_url
    files = {
        TWINS.name: settings.twin_db,
        AUDIT.name: settings.audit_db,
        REPLAY.name: settings.replay_db,
        SESSIONS.name: settings.app_sessions_db,
    }
    return sqlite_url(files[schema.name])


@contextmanager
def _database(settings: Settings, schema: StoreSchema) -> Iterator[Database]:
    db = Database(store_url(settings, schema), schema.name, StorageUnavailable, RuntimeError)
    try:
        yield db
    finally:
        db.close()


def current(settings: Settings) -> dict[str, str]:
    """Each store's revision, as ``twin-cds db current`` prints it."""
    out = {}
    for schema in STORES:
        with _database(settings, schema) as db:
            out[schema.name] = describe(db, schema)
    return out


def upgrade_all(settings: Settings) -> dict[str, dict[str, str | None]]:
    """Bring every store to the head (adopting databases of the release before
    revisions); each store's revision before and after."""
    out: dict[str, dict[str, str | None]] = {}
    for schema in STORES:
        with _database(settings, schema) as db:
            before = upgrade(db, schema)
        out[schema.name] = {"from": before, "to": schema.head()}
    return out
