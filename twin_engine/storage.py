"""What every store of the product (twin versions, audit trail, JWT replay cache, app
sessions; SQLite or PostgreSQL) says when the storage itself fails.

A store that cannot be reached or written (PostgreSQL refusing connections or gone, a
full disk, a read-only data directory) raises ``StorageUnavailable``: the HTTP edge
answers 503 with ``Retry-After``, because the same call may succeed later and nothing
the caller sent was wrong. Any other database error is a fault of ours (500).

A PostgreSQL connection the server closed (a restarted or failed-over server, a
terminated backend, an idle timeout) is noticed only on its next use. The stores then
reconnect and run the call once more, but only when what failed had not committed;
``lost_connection`` tells whether a failed connection is such a one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

# SQLite's primary result codes that mean the storage, not the statement, failed
# (https://www.sqlite.org/rescode.html): BUSY and LOCKED after the busy timeout,
# READONLY, IOERR, FULL, CANTOPEN, PROTOCOL (WAL lock race).
_SQLITE_STORAGE_CODES = frozenset({5, 6, 8, 10, 13, 14, 15})


class StorageUnavailable(Exception):
    """A store could not be reached or written; a later retry may succeed.

    ``recorded`` says whether the call's audit record was written anyway (False: it was
    not; None: unknown, the connection was lost while committing).
    """

    recorded: bool | None = False


def sqlite_storage_failure(exc: BaseException) -> bool:
    """True when a SQLite error is the storage failing (disk full, read-only, I/O)."""
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _SQLITE_STORAGE_CODES
    return isinstance(exc, sqlite3.OperationalError)


def pg_storage_failure(exc: BaseException) -> bool:
    """True when a psycopg error is the server or its storage failing: connection
    errors (SQLSTATE class 08), insufficient resources such as a full disk (53),
    operator intervention such as a terminated backend (57), system errors (58), a
    read-only standby after failover (25006)."""
    import psycopg

    if isinstance(exc, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction):
        return True
    return isinstance(exc, psycopg.InterfaceError)


def lost_connection(conn: Any) -> bool:
    """True when a psycopg connection is gone (closed by the server or broken)."""
    return conn is None or bool(conn.closed) or bool(getattr(conn, "broken", False))


T = TypeVar("T")


class ReconnectingPg:
    """One PostgreSQL connection (autocommit; transactions are explicit) that is
    reopened when the server closed it, used by one thread at a time.

    ``run`` executes a unit of work in a transaction. When the connection turns out to
    have been closed by the server before the work committed, nothing was written, so
    the work runs once more on a new connection; a second loss, a refused connection
    or a storage error raises ``unavailable``; any other database error ``failed``.
    A connection lost during COMMIT is not retried: the work may have committed.
    """

    def __init__(
        self,
        url: str,
        what: str,
        unavailable: Callable[[str], StorageUnavailable],
        failed: Callable[[str], Exception],
        *,
        holds_the_record: bool = False,
    ) -> None:
        self._url = url
        # The audit store: a commit of unknown outcome leaves the call's record unknown.
        self._holds_the_record = holds_the_record
        self._what = what
        self._unavailable = unavailable
        self._failed = failed
        self._conn: Any = None
        self._lock = threading.Lock()

    def _live(self) -> Any:
        import psycopg

        if lost_connection(self._conn):
            self._discard()
            try:
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            except psycopg.Error as exc:
                # The URL may hold a password: name the failure, never the URL.
                raise self._unavailable(
                    f"cannot connect to the {self._what} database: {type(exc).__name__}"
                ) from exc
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def run(self, work: Callable[[Any], T]) -> T:
        with self._lock:
            try:
                return self._once(work, retry=True)
            except _Retry:
                return self._once(work, retry=False)

    def _once(self, work: Callable[[Any], T], *, retry: bool) -> T:
        import psycopg

        conn = self._live()
        committing = False
        try:
            conn.execute("BEGIN")
            result = work(conn)
            committing = True
            conn.execute("COMMIT")
            return result
        except psycopg.Error as exc:
            lost = lost_connection(conn)
            if lost:
                self._discard()
            elif conn.info.transaction_status != 0:  # not IDLE: roll back what we began
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            if lost and retry and not committing:
                raise _Retry from exc
            if lost or pg_storage_failure(exc):
                error = self._unavailable(
                    f"the {self._what} database failed: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                )
                if lost and committing and self._holds_the_record:
                    error.recorded = None
                raise error from exc
            raise self._failed(f"the {self._what} database refused a statement: {exc}") from exc
        except BaseException:
            if not lost_connection(conn) and conn.info.transaction_status != 0:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._discard()


class _Retry(Exception):
    """The connection was closed by the server before the work committed."""
