"""The JWT replay cache: jti values already used, per issuer, until their token expires.

SQLite under the data directory (shared by the workers of one host) or PostgreSQL
when ``TWIN_CDS_DATABASE_URL`` is set (shared by the replicas). The table's name is
the one each backend had before revisions existed (``used_jti`` in its own SQLite
file, ``twin_cds_used_jti`` beside the other stores in PostgreSQL).
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Column, Double, MetaData, Table, Text
from sqlalchemy.types import REAL

from twin_engine.storage import StorageUnavailable
from twin_engine.store.db import Database, DriverTx, sqlite_url
from twin_engine.store.migrate import StoreSchema, ensure_current, schema_check

# A jti is kept this long after its token expired, for clocks a little apart.
_GRACE_S = 300


class ReplayCacheUnavailable(StorageUnavailable):
    """The JWT replay cache could not be reached or written: a call cannot be checked
    for replay, so it is not answered (503)."""


def _table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("iss", Text, primary_key=True),
        Column("jti", Text, primary_key=True),
        # REAL in SQLite, DOUBLE PRECISION in PostgreSQL, as the tables were created.
        Column("expires_at", Double().with_variant(REAL(), "sqlite"), nullable=False),
    )


TABLES = {
    "sqlite": _table("used_jti", MetaData()),
    "postgresql": _table("twin_cds_used_jti", MetaData()),
}


def _first_use_sql(table: str, mark: str) -> tuple[str, str]:
    """A call's two statements, as the driver runs them (``Database.write_driver``):
    drop the expired jti, then insert this one unless it is there (then no row returns)."""
    return (
        f"DELETE FROM {table} WHERE expires_at < {mark}",  # noqa: S608 - our own table name
        f"INSERT INTO {table} (iss, jti, expires_at) VALUES ({mark}, {mark}, {mark}) "  # noqa: S608
        "ON CONFLICT DO NOTHING RETURNING jti",
    )


FIRST_USE_SQL = {
    "sqlite": _first_use_sql("used_jti", "?"),
    "postgresql": _first_use_sql("twin_cds_used_jti", "%s"),
}

SCHEMA = StoreSchema(
    name="replay",
    versions=Path(__file__).parent / "migrations",
    version_table="twin_cds_revision_replay",
    baseline={d: {t.name: frozenset(t.columns.keys())} for d, t in TABLES.items()},
)


class SqlReplayCache:
    """The jti cache on SQLite or PostgreSQL (one connection pool per cache)."""

    def __init__(self, url: str) -> None:
        # Synchronous FULL, like the audit trail: with NORMAL a power cut can forget a
        # jti already accepted and let a captured token be replayed for the rest of its
        # lifetime. A refused replay is a security property, so it is not traded for the
        # commit's time (the twin store, rebuilt from FHIR, is the one that runs NORMAL).
        self.db = Database(
            url, "JWT replay cache", ReplayCacheUnavailable, RuntimeError, synchronous="FULL"
        )
        self._purge, self._insert = FIRST_USE_SQL[self.db.dialect]
        ensure_current(self.db, SCHEMA)

    def first_use(self, iss: str, jti: str, expires_at: float) -> bool:
        """Record the jti; False when it was already used (by any worker or replica)."""
        now = time.time()

        def record(tx: DriverTx) -> bool:
            tx.run(self._purge, (now - _GRACE_S,))
            return tx.first(self._insert, (iss, jti, expires_at)) is not None

        # In a transaction: a connection lost before COMMIT is retried on a new one
        # without the risk of finding our own insert and calling it a replay.
        return self.db.write_driver(record)

    def schema_check(self) -> dict[str, str]:
        return schema_check(self.db, SCHEMA)

    def close(self) -> None:
        self.db.close()


class ReplayCache(SqlReplayCache):
    """The jti cache in one SQLite file (WAL), shared by the workers of one host."""

    def __init__(self, path: Path) -> None:
        super().__init__(sqlite_url(path))


class PostgresReplayCache(SqlReplayCache):
    """The jti cache in PostgreSQL, so it holds across replicas sharing the database."""
