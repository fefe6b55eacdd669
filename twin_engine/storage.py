"""What every store of the product (twin versions, audit trail, JWT replay cache, app
sessions; SQLite or PostgreSQL) says when the storage itself fails.

A store that cannot be reached or written (PostgreSQL refusing connections or gone, a
full disk, a read-only data directory) raises ``StorageUnavailable``: the HTTP edge
answers 503 with ``Retry-After``, because the same call may succeed later and nothing
the caller sent was wrong. Any other database error is a fault of ours (500).

A PostgreSQL connection the server closed (a restarted or failed-over server, a
terminated backend, an idle timeout) is noticed only on its next use. The stores then
reconnect and run the call once more, but only when what failed had not committed
(``twin_engine.store.db.Database``).
"""

from __future__ import annotations

import sqlite3

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
