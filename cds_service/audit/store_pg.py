"""The audit chain in PostgreSQL, for several service replicas writing at once.

Every append runs in one transaction that first locks the chain's head row
(``SELECT ... FOR UPDATE``): writers in any number of processes queue on that row, so
each links to the record committed just before it and the chain stays one chain. In
READ COMMITTED, the locked read returns the head as the previous writer committed it.

The schema is the one ``audit.SCHEMA`` gives SQLite, in whatever schema the URL's
``search_path`` names (``?options=-csearch_path%3Dname``), plus triggers that refuse
UPDATE and DELETE on the chain (a safety catch; the hashes are the proof).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from cds_service.audit.log import (
    SCHEMA,
    AuditConfigError,
    AuditError,
    AuditSigner,
    AuditUnavailable,
    AuditWriteError,
    ChainedAuditLog,
    Tx,
    _utc_now_text,
)
from twin_engine.storage import ReconnectingPg

_T = TypeVar("_T")

_APPEND_ONLY = (
    """CREATE OR REPLACE FUNCTION audit_chain_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'the audit chain is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_chain_no_change BEFORE UPDATE OR DELETE
       ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_chain_append_only()""",
)
# Two replicas starting together must not both run CREATE TABLE IF NOT EXISTS (it can
# fail on a catalog unique index); an advisory lock makes schema creation one at a time.
_SCHEMA_LOCK_KEY = 0x7477696E_6364  # "twin" "cd"


def _pg(sql: str) -> str:
    # Our statements use ? placeholders and contain no literal question marks.
    return sql.replace("?", "%s")


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_pg(sql), params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(_pg(sql), params).rowcount


class _PgReads:
    """Reads, each statement its own transaction on the thread's connection (so a
    connection the server closed is reopened and the read repeated)."""

    def __init__(self, db: ReconnectingPg) -> None:
        self._db = db

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result: list[tuple[Any, ...]] = self._db.run(
            lambda conn: conn.execute(_pg(sql), params).fetchall()
        )
        return result

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        raise AuditWriteError("a read view does not write")


class PostgresAuditLog(ChainedAuditLog):
    """The audit chain in PostgreSQL; one connection per thread, reopened (and the append
    run once more) when the server closed it before the append committed."""

    def __init__(
        self,
        url: str,
        *,
        signer: AuditSigner | None = None,
        checkpoint_every: int = 100,
        clock: Callable[[], str] = _utc_now_text,
    ) -> None:
        super().__init__(signer=signer, checkpoint_every=checkpoint_every, clock=clock)
        self._url = url
        self._local = threading.local()
        self._all: list[ReconnectingPg] = []
        self._lock = threading.Lock()

        def create(tx: Tx) -> None:
            tx.rows("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))
            for statement in (*SCHEMA, *_APPEND_ONLY):
                tx.run(statement)

        try:
            self._transaction(create)
        except AuditError as exc:
            raise AuditConfigError(f"cannot create the audit schema: {exc}") from exc

    def _db(self) -> ReconnectingPg:
        db: ReconnectingPg | None = getattr(self._local, "db", None)
        if db is None:
            db = ReconnectingPg(
                self._url, "audit", AuditUnavailable, AuditWriteError, holds_the_record=True
            )
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def _tenant_sql(self) -> str:
        return (
            "COALESCE(body::jsonb #>> '{client,tenant}', "
            "CASE WHEN kind = 'app-access' THEN body::jsonb ->> 'tenant' END)"
        )

    def _lock_head_sql(self) -> str:
        return "SELECT seq, record_hash FROM audit_head WHERE id = 1 FOR UPDATE"

    def _transaction(self, work: Callable[[Tx], _T]) -> _T:
        return self._db().run(lambda conn: work(_PgTx(conn)))

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        yield _PgReads(self._db())

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()
