"""The versioned twin store on SQLite (embedded default) or PostgreSQL (replicas).

A save writes version N+1 only when the content hash differs from the latest
version's, and every version stays readable. Writers saving the same patient at once
are serialised: on SQLite by ``BEGIN IMMEDIATE`` (``Database.write``), on PostgreSQL by
a transaction-scoped advisory lock on the store key (``pg_advisory_xact_lock``); the
primary key would refuse a second N+1 anyway. A card's ``appContext.twinVersion``
then names a version every replica can open.

The twin store's SQLite file syncs at WAL checkpoints, not at each commit
(``synchronous=NORMAL``): a twin is rebuilt from the EHR's FHIR at the next call, so
losing the last versions to a power cut loses nothing that cannot be recomputed, and a
hook call pays one synced commit (the audit record's), not two. The audit trail, which
cannot be rebuilt, stays at FULL.

On PostgreSQL the table lives in whatever schema the URL's ``search_path`` names
(``?options=-csearch_path%3Dname``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from twin_engine.errors import StoreError, TwinStoreUnavailable
from twin_engine.store.db import Database, DriverTx, Synchronous, sqlite_url
from twin_engine.store.migrate import ensure_current, schema_check
from twin_engine.store.port import (
    StoredTwin,
    TwinVersion,
    _utc_now,
    _version,
    state_json,
    stored_twin,
)
from twin_engine.store.schema import SCHEMA, twin_versions
from twin_engine.twin import Twin, state_hash

_t = twin_versions.c
_HEAD = (_t.version, _t.content_hash, _t.created_at, _t.as_of)

# The save's statements as the driver runs them (``Database.write_driver``): SQLAlchemy's
# per-statement work cost a new patient's hook call more than running them (py-spy).
# tests/twin_engine/test_store_sql.py holds them to what Core compiles from the table.
_LATEST = (
    "SELECT version, content_hash, created_at, as_of FROM twin_versions "
    "WHERE patient_id = ? ORDER BY version DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO twin_versions (patient_id, version, content_hash, created_at, as_of, "
    "twin_json) VALUES (?, ?, ?, ?, ?, ?)"
)
# One writer per key at a time on PostgreSQL, until the transaction ends.
_PG_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _postgres(sql: str) -> str:
    """psycopg's placeholders (our statements hold no literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


_SAVE_SQL = {
    "sqlite": (None, _LATEST, _INSERT),
    "postgresql": (_PG_LOCK, _postgres(_LATEST), _postgres(_INSERT)),
}


def open_twin_database(url: str, *, synchronous: Synchronous = "NORMAL") -> Database:
    return Database(url, "twin store", TwinStoreUnavailable, StoreError, synchronous=synchronous)


class SqlTwinStore:
    """`TwinStore` on one database; one connection pool per store."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        self._clock = clock
        self.db = open_twin_database(url, synchronous=synchronous)
        self._sql = _SAVE_SQL[self.db.dialect]
        ensure_current(self.db, SCHEMA)

    def save(self, twin: Twin, *, as_of: str | None = None, key: str | None = None) -> TwinVersion:
        """Write a new version unless the latest has the same content hash.

        Same content: returns the latest version (created=False) and writes nothing.
        ``key`` names whose twin this is when patient ids are not unique across the EHRs
        a service answers (e.g. ``"<tenant>|<patient id>"``); default: the patient id.
        """
        store_key = key if key is not None else twin.patient_id
        # The state's text once, for its hash and (when it is new) the stored version.
        text = state_json(twin)
        content_hash = state_hash(text)
        lock, latest, insert = self._sql

        def write(tx: DriverTx) -> TwinVersion:
            if lock is not None:
                tx.run(lock, (store_key,))
            row = tx.first(latest, (store_key,))
            if row is not None and row[1] == content_hash:
                return _version(store_key, row)
            number = 1 if row is None else int(row[0]) + 1
            created_at = self._clock()
            # Serialised only when a version is written: most refreshes change nothing.
            values = (store_key, number, content_hash, created_at.isoformat(), as_of)
            tx.run(insert, (*values, text))
            return TwinVersion(store_key, number, content_hash, created_at, as_of, created=True)

        return self.db.write_driver(write)

    def load(self, patient_id: str, version: int | None = None) -> StoredTwin:
        """The given version (default: the latest) of a patient's twin."""
        query = select(*_HEAD, _t.twin_json).where(_t.patient_id == patient_id)
        if version is None:
            query = query.order_by(_t.version.desc()).limit(1)
        else:
            query = query.where(_t.version == version)
        row = self.db.read(lambda conn: conn.execute(query).first())
        return stored_twin(patient_id, version, None if row is None else tuple(row))

    def versions(self, patient_id: str) -> list[TwinVersion]:
        """All versions of a patient's twin, oldest first."""
        query = select(*_HEAD).where(_t.patient_id == patient_id).order_by(_t.version)
        rows = self.db.read(lambda conn: conn.execute(query).all())
        return [_version(patient_id, tuple(row)) for row in rows]

    def schema_check(self) -> dict[str, str]:
        """Readiness: the database answers and its schema is this release's."""
        return schema_check(self.db, SCHEMA)

    def close(self) -> None:
        """Close the pool's connections (the app calls this when it stops)."""
        self.db.close()


class SqliteTwinStore(SqlTwinStore):
    """The twin store in one SQLite file (WAL), safe for concurrent writers."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        super().__init__(sqlite_url(Path(path)), clock=clock)


class PostgresTwinStore(SqlTwinStore):
    """The twin store in PostgreSQL, shared by replicas."""
