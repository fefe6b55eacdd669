"""The versioned twin store in PostgreSQL, for several service replicas.

Same contract as `SqliteTwinStore`: a save writes version N+1 only when the content
hash differs from the latest version's, and every version stays readable. Replicas
saving the same patient at once are serialised by a transaction-scoped advisory lock on
the store key (`pg_advisory_xact_lock`), so two writers never both read version N and
both write N+1; the primary key would refuse the second anyway. A card's
``appContext.twinVersion`` then names a version every replica can open.

The table lives in whatever schema the URL's ``search_path`` names
(``?options=-csearch_path%3Dname``). psycopg is imported here only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from twin_engine.errors import StoreError, TwinStoreUnavailable
from twin_engine.storage import ReconnectingPg
from twin_engine.store import (
    INSERT_SQL,
    LATEST_SQL,
    SCHEMA,
    VERSIONS_SQL,
    StoredTwin,
    TwinVersion,
    _utc_now,
    _version,
    load_query,
    state_json,
    stored_twin,
)
from twin_engine.twin import Twin

#: Advisory-lock namespace for schema creation (two replicas starting together).
_SCHEMA_LOCK = 7_451_001


def _pg(sql: str) -> str:
    """The shared statements use SQLite's "?" placeholders; psycopg's are "%s"."""
    return sql.replace("?", "%s")


class PostgresTwinStore:
    """`TwinStore` in PostgreSQL: one connection per store, used under a lock, reopened
    (and the call run once more) when the server closed it before the call committed."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self._db = ReconnectingPg(url, "twin store", TwinStoreUnavailable, StoreError)

        def create(conn: Any) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(SCHEMA)

        self._db.run(create)

    def save(self, twin: Twin, *, as_of: str | None = None, key: str | None = None) -> TwinVersion:
        """Write a new version unless the latest has the same content hash."""
        store_key = key if key is not None else twin.patient_id
        content_hash = twin.content_hash()

        def write(conn: Any) -> TwinVersion:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (store_key,))
            row = conn.execute(_pg(LATEST_SQL), (store_key,)).fetchone()
            if row is not None and row[1] == content_hash:
                return _version(store_key, row)
            number = 1 if row is None else int(row[0]) + 1
            created_at = self._clock()
            row_values = (store_key, number, content_hash, created_at.isoformat(), as_of)
            conn.execute(_pg(INSERT_SQL), (*row_values, state_json(twin)))
            return TwinVersion(store_key, number, content_hash, created_at, as_of, created=True)

        return self._db.run(write)

    def load(self, patient_id: str, version: int | None = None) -> StoredTwin:
        """The given version (default: the latest) of a patient's twin."""
        query, params = load_query(patient_id, version)
        row = self._db.run(lambda conn: conn.execute(_pg(query), params).fetchone())
        return stored_twin(patient_id, version, row)

    def versions(self, patient_id: str) -> list[TwinVersion]:
        """All versions of a patient's twin, oldest first."""
        rows = self._db.run(lambda conn: conn.execute(_pg(VERSIONS_SQL), (patient_id,)).fetchall())
        return [_version(patient_id, row) for row in rows]

    def close(self) -> None:
        self._db.close()
