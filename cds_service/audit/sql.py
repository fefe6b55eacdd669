"""The audit chain on SQLite (embedded default) or PostgreSQL (several replicas), and
the factory that opens the one the settings name.

SQLite: one file in WAL mode with ``synchronous=FULL`` (a committed record survives a
crash or a power cut), appends serialised by ``BEGIN IMMEDIATE``.

PostgreSQL: every append runs in one transaction that first locks the chain's head
row (``SELECT ... FOR UPDATE``): writers in any number of processes queue on that row,
so each links to the record committed just before it and the chain stays one chain.
In READ COMMITTED, the locked read returns the head as the previous writer committed
it. Triggers refuse UPDATE and DELETE on the chain (a safety catch; the hashes are the
proof). Tables live in whatever schema the URL's ``search_path`` names.

Both run through one ``twin_engine.store.db.Database`` (one connection pool per log),
which maps storage failures to ``AuditUnavailable`` (503) and retries an append once
when the server closed its connection before it committed. Appends run on the driver's
connection (``Database.write_driver``: SQLAlchemy's per-transaction work cost a hook
call more than the statements), reads through SQLAlchemy.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection

from cds_service.audit.chain import (
    AuditSigner,
    AuditUnavailable,
    AuditWriteError,
    load_signer,
    load_verify_key,
)
from cds_service.audit.log import ChainedAuditLog, Tx, _utc_now_text
from cds_service.audit.schema import SCHEMA
from twin_engine.store.db import Database, DriverTx, sqlite_url
from twin_engine.store.migrate import ensure_current, schema_check

if TYPE_CHECKING:
    from cds_service.settings import Settings

_T = TypeVar("_T")

log = logging.getLogger("twin_cds.audit")


@functools.lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    """A chain statement (``?`` placeholders) in psycopg's style: the one place they are
    put in the driver's style. Our statements contain no literal ``?`` or ``%``."""
    return sql.replace("?", "%s")


class _Appends:
    """The chain's statements in one append transaction, on the driver's connection."""

    __slots__ = ("_pg", "_tx")

    def __init__(self, tx: DriverTx, pg: bool) -> None:
        self._tx = tx
        self._pg = pg

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._tx.rows(_psycopg_sql(sql) if self._pg else sql, params)

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._tx.run(_psycopg_sql(sql) if self._pg else sql, params)


class _Tx:
    """The chain's statements on one SQLAlchemy connection (reads)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pg = conn.dialect.name == "postgresql"

    def _sql(self, sql: str) -> str:
        return _psycopg_sql(sql) if self._pg else sql

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.exec_driver_sql(self._sql(sql), tuple(params))]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._conn.exec_driver_sql(self._sql(sql), tuple(params)).rowcount)


class _Reads:
    """Reads, each statement its own read transaction (on PostgreSQL, a connection the
    server closed is reopened and the read repeated)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.read(lambda conn: _Tx(conn).rows(sql, params))

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise AuditWriteError("a read view does not write")


class SqlAuditLog(ChainedAuditLog):
    """The audit chain in one database, SQLite or PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        signer: AuditSigner | None = None,
        checkpoint_every: int = 100,
        clock: Callable[[], str] = _utc_now_text,
    ) -> None:
        super().__init__(signer=signer, checkpoint_every=checkpoint_every, clock=clock)
        self.db = Database(url, "audit", AuditUnavailable, AuditWriteError, holds_the_record=True)
        self._pg = self.db.dialect == "postgresql"
        ensure_current(self.db, SCHEMA)

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return self.db.path

    def _tenant_sql(self) -> str:
        if self._pg:
            return (
                "COALESCE(body::jsonb #>> '{client,tenant}', "
                "CASE WHEN kind = 'app-access' THEN body::jsonb ->> 'tenant' END)"
            )
        return (
            "COALESCE(json_extract(body, '$.client.tenant'), "
            "CASE WHEN kind = 'app-access' THEN json_extract(body, '$.tenant') END)"
        )

    def _lock_head_sql(self) -> str:
        # SQLite: BEGIN IMMEDIATE already holds the database's write lock.
        head = "SELECT seq, record_hash FROM audit_head WHERE id = 1"
        return head + (" FOR UPDATE" if self._pg else "")

    def _transaction(self, work: Callable[[Tx], _T]) -> _T:
        return self.db.write_driver(lambda tx: work(_Appends(tx, self._pg)))

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        yield _Reads(self.db)

    def schema_check(self) -> dict[str, str]:
        """Readiness: the database answers and its schema is this release's."""
        return schema_check(self.db, SCHEMA)

    def close(self) -> None:
        self.db.close()


class SqliteAuditLog(SqlAuditLog):
    """The audit chain in one SQLite file (WAL, synchronous=FULL)."""

    def __init__(
        self,
        path: Path,
        *,
        signer: AuditSigner | None = None,
        checkpoint_every: int = 100,
        clock: Callable[[], str] = _utc_now_text,
    ) -> None:
        super().__init__(
            sqlite_url(path), signer=signer, checkpoint_every=checkpoint_every, clock=clock
        )
        self._file = Path(path)

    @property
    def path(self) -> Path:
        return self._file


class PostgresAuditLog(SqlAuditLog):
    """The audit chain in PostgreSQL, shared by replicas."""


def open_audit_log(settings: Settings) -> SqlAuditLog:
    """The audit log the settings name: PostgreSQL when a database URL is set, else
    SQLite under the data directory; signing checkpoints when a key is configured."""
    signer = (
        load_signer(settings.audit_signing_key_file) if settings.audit_signing_key_file else None
    )
    if signer is None:
        log.warning(
            "no audit signing key configured (TWIN_CDS_AUDIT_SIGNING_KEY_FILE): audit "
            "checkpoints are not signed"
        )
    every = settings.audit_checkpoint_every
    if settings.database_url:
        return PostgresAuditLog(settings.database_url, signer=signer, checkpoint_every=every)
    return SqliteAuditLog(settings.audit_db, signer=signer, checkpoint_every=every)


def verify_key_from(settings: Settings) -> Ed25519PublicKey | None:
    """The key that checks checkpoint signatures: the verify key, else the signing key's."""
    if settings.audit_verify_key_file:
        return load_verify_key(settings.audit_verify_key_file)
    if settings.audit_signing_key_file:
        return load_signer(settings.audit_signing_key_file).public_key
    return None
