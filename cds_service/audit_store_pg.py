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
from typing import Any

import psycopg

from cds_service.audit import (
    SCHEMA,
    AuditConfigError,
    AuditSigner,
    AuditWriteError,
    ChainedAuditLog,
    Tx,
    _utc_now_text,
)

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


class PostgresAuditLog(ChainedAuditLog):
    """The audit chain in PostgreSQL; one connection per thread."""

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
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        conn = self._conn()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                for statement in (*SCHEMA, *_APPEND_ONLY):
                    conn.execute(statement)
        except psycopg.Error as exc:
            raise AuditConfigError(f"cannot create the audit schema: {exc}") from exc

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(self._url, autocommit=True)
            except psycopg.Error as exc:
                # The URL may hold a password: name the failure, not the URL.
                raise AuditConfigError(
                    f"cannot connect to the audit database: {type(exc).__name__}"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _lock_head_sql(self) -> str:
        return "SELECT seq, record_hash FROM audit_head WHERE id = 1 FOR UPDATE"

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        conn = self._conn()
        try:
            with conn.transaction():
                yield _PgTx(conn)
        except psycopg.Error as exc:
            raise AuditWriteError(f"audit record not written: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        yield _PgTx(self._conn())

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
