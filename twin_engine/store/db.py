"""One store's database: a SQLAlchemy engine (one connection pool per store and
process), transactions with the failure semantics of ``twin_engine.storage``, and the
store's schema revision (``twin_engine.store.migrate``).

SQLite (the embedded default) and PostgreSQL (several replicas) run the same SQLAlchemy
Core statements. On SQLite every connection is in WAL mode with the store's own
``synchronous`` level, and a write transaction starts with ``BEGIN IMMEDIATE`` so two
writers never both read the same latest row; on PostgreSQL the stores lock what they
read (``FOR UPDATE``, advisory locks).

A PostgreSQL connection the server closed is noticed on its next use: the pool drops
it and the transaction runs once more on a new one, but only when it had not begun to
commit (a second loss, a refused connection or a storage error is ``unavailable``).

The hot writes (a twin save, an audit append, a replay-cache check: every hook call)
run through ``write_driver`` instead: their statements as fixed text in the driver's
own parameter style on the pool's DBAPI connection, in one explicit transaction, with
the same queue, retry and failure semantics. SQLAlchemy's per-statement work (a
Connection, its Transaction objects, begin/commit events, compiled-cache lookups) cost
a hook call more than the statements did (py-spy); schema, migrations and cold reads
stay on SQLAlchemy Core. On SQLite, where they queue on one lock anyway, the hot writes
keep one connection between writes rather than a pool round trip each.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from twin_engine.storage import StorageUnavailable, pg_storage_failure, sqlite_storage_failure

T = TypeVar("T")

#: SQLite's durability per store: FULL syncs the WAL at every commit (a committed row
#: survives power loss); NORMAL syncs at checkpoints only (a commit survives a crash of
#: the process, and the database stays consistent, but the last commits may be lost on
#: power loss). https://www.sqlite.org/pragma.html#pragma_synchronous
Synchronous = Literal["FULL", "NORMAL"]

# Several service workers may write at once; wait for SQLite's lock rather than fail.
_SQLITE_BUSY_TIMEOUT_S = 30.0
# Hook calls run the stores from a thread pool; connections beyond the pool's size are
# opened and closed per use (the ~2 ms the cold path paid for every call before pooling).
_POOL_SIZE = 8
_MAX_OVERFLOW = 24
# PostgreSQL's connections are the server's (max_connections defaults to 100) and four
# stores per worker per replica share them: at most 12 per store and process; a call
# that finds none free within the pool timeout is a 503 (StorageUnavailable).
_PG_POOL_SIZE = 4
_PG_MAX_OVERFLOW = 8
_PG_CONNECT_TIMEOUT_S = 5
_WRITE = "twin_cds_write"


def database_url(url: str) -> str:
    """The SQLAlchemy URL of a settings URL: ``postgresql://`` runs on psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


class Database:
    """One store's engine and its transactions.

    ``write``/``read`` run ``work`` in one transaction and map failures: the storage
    failing (unreachable, full, read-only, lost) raises ``unavailable``, any other
    database error ``failed``. ``holds_the_record``: a commit of unknown outcome leaves
    the call's audit record unknown (``StorageUnavailable.recorded = None``).
    """

    def __init__(
        self,
        url: str,
        what: str,
        unavailable: Callable[[str], StorageUnavailable],
        failed: Callable[[str], Exception],
        *,
        holds_the_record: bool = False,
        synchronous: Synchronous = "FULL",
    ) -> None:
        self.what = what
        self._unavailable = unavailable
        self._failed = failed
        self._holds_the_record = holds_the_record
        sa_url = make_url(database_url(url))
        self.dialect = sa_url.get_backend_name()
        self.path: Path | None = None
        self._sqlite_writer = threading.RLock()
        # SQLite's hot writes queue on ``_sqlite_writer``, so one connection serves them
        # all: held between writes instead of checked out of the pool and back each time.
        self._held: PoolProxiedConnection | None = None
        self._held_busy = False
        if self.dialect == "sqlite":
            self.path = Path(sa_url.database or "")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(sa_url.render_as_string(), synchronous)
        else:
            self.engine = create_engine(
                sa_url,
                pool_size=_PG_POOL_SIZE,
                max_overflow=_PG_MAX_OVERFLOW,
                connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S},
            )

    @classmethod
    def sqlite(
        cls,
        path: Path,
        what: str,
        unavailable: Callable[[str], StorageUnavailable],
        failed: Callable[[str], Exception],
        **kwargs: Any,
    ) -> Database:
        return cls(sqlite_url(path), what, unavailable, failed, **kwargs)

    @property
    def where(self) -> str:
        """The store as named in errors: the SQLite file, never a URL (it may hold a password)."""
        return str(self.path) if self.path is not None else f"the {self.what} database"

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction (SQLite: ``BEGIN IMMEDIATE``)."""
        self._check_writable()
        return self._run(work, write=True)

    def write_driver(self, work: Callable[[DriverTx], T]) -> T:
        """``write`` for the hot paths: ``work`` runs fixed SQL text (``?`` on SQLite,
        ``%s`` on PostgreSQL) on the pooled DBAPI connection in one transaction
        (SQLite: ``BEGIN IMMEDIATE`` ... ``COMMIT``), queued, retried and mapped to
        ``unavailable``/``failed`` exactly as ``write``."""
        self._check_writable()
        if self.path is not None:
            with self._sqlite_writer:
                return self._driver_retrying(work)
        return self._driver_retrying(work)

    def _check_writable(self) -> None:
        if self.path is not None and not os.access(self.path, os.W_OK) and self.path.exists():
            # A pooled connection keeps an open file writable after the directory or
            # file was made read-only: ask, as opening a connection per call used to.
            raise self._unavailable(f"{self.where} is not writable")

    def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a read transaction (one snapshot for all its statements)."""
        return self._run(work, write=False)

    def _run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        if write and self.path is not None:
            # SQLite has one writer at a time: this process's writers queue here, woken
            # as soon as the lock is free, rather than in SQLite's busy handler, which
            # sleeps up to 100 ms between tries (other processes still meet it there).
            with self._sqlite_writer:
                return self._retrying(work, write=write)
        return self._retrying(work, write=write)

    def _retrying(self, work: Callable[[Connection], T], *, write: bool) -> T:
        try:
            return self._once(work, write=write, retry=True)
        except _Retry:
            return self._once(work, write=write, retry=False)

    def _once(self, work: Callable[[Connection], T], *, write: bool, retry: bool) -> T:
        connected = committing = False
        try:
            with self.engine.connect() as conn:
                connected = True
                conn.execution_options(**{_WRITE: write})
                with conn.begin():
                    result = work(conn)
                    committing = True
                return result
        except DBAPIError as exc:
            lost = bool(exc.connection_invalidated)
            if lost and retry and not committing:
                raise _Retry from exc
            error = self._error(exc.orig, connected=connected, lost=lost, committing=committing)
            raise error from exc
        except PoolTimeout as exc:
            raise self._unavailable(f"{self.where}: no free connection ({exc})") from exc
        except SQLAlchemyError as exc:
            raise self._failed(f"{self.where} failed: {exc}") from exc

    def _error(
        self, orig: BaseException | None, *, connected: bool, lost: bool, committing: bool
    ) -> Exception:
        """What a driver error means: the storage failing (``unavailable``) or not."""
        if not connected:
            # The URL may hold a password: name the failure, never the URL.
            error = self._unavailable(f"cannot connect to {self.where}: {type(orig).__name__}")
        elif lost or _storage_failure(orig):
            error = self._unavailable(f"{self.where} failed: {_first_line(orig)}")
            if lost and committing and self._holds_the_record:
                error.recorded = None
        else:
            return self._failed(f"{self.where} refused a statement: {_first_line(orig)}")
        return error

    def _driver_retrying(self, work: Callable[[DriverTx], T]) -> T:
        try:
            return self._driver_once(work, retry=True)
        except _Retry:
            return self._driver_once(work, retry=False)

    def _driver_once(self, work: Callable[[DriverTx], T], *, retry: bool) -> T:
        driver_error = self.engine.dialect.loaded_dbapi.Error
        # SQLite (writes serialised by ``_sqlite_writer``): the held connection, unless a
        # write on this thread is already using it (then the pool's, as before).
        hold = self.path is not None and not self._held_busy
        pooled = self._held if hold else None
        if pooled is None:
            try:
                pooled = self.engine.raw_connection()
            except PoolTimeout as exc:
                raise self._unavailable(f"{self.where}: no free connection ({exc})") from exc
            except driver_error as exc:
                raise self._error(exc, connected=False, lost=False, committing=False) from exc
        committing = kept = False
        if hold:
            self._held, self._held_busy = None, True
        try:
            conn: Any = pooled.driver_connection
            if self.path is not None:
                # As the "begin" listener does for ``write``: the write lock first.
                conn.execute("BEGIN IMMEDIATE")
            # psycopg begins the transaction itself at the first statement.
            try:
                result = work(DriverTx(conn))
                committing = True
                conn.commit()
            except BaseException:
                _rollback(pooled)
                raise
            kept = hold
            return result
        except driver_error as exc:
            lost = self.engine.dialect.is_disconnect(exc, pooled.dbapi_connection, None)
            if lost:
                # As a Connection does on a disconnect: this connection and every pooled
                # one opened before it are replaced (a restarted server closed them all).
                self.engine.pool._invalidate(pooled, exc)
                if retry and not committing:
                    raise _Retry from exc
            raise self._error(exc, connected=True, lost=lost, committing=committing) from exc
        finally:
            if hold:
                self._held_busy = False
            if kept:
                self._held = pooled  # committed: held for the next write
            else:
                # Back to the pool (or discarded, when invalidated); after a failure the
                # next write checks one out afresh.
                pooled.close()

    def close(self) -> None:
        """Close the pool's connections (the app calls this when it stops)."""
        with self._sqlite_writer:
            held, self._held = self._held, None
            if held is not None:
                held.close()
        self.engine.dispose()


class DriverTx:
    """One open transaction on a pooled DBAPI connection (sqlite3 or psycopg): fixed
    SQL text in the driver's parameter style, ``?`` on SQLite and ``%s`` on PostgreSQL."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
        return rows

    def first(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        # All rows, so the statement is finished (an INSERT ... RETURNING too) before COMMIT.
        rows = self._conn.execute(sql, params).fetchall()
        return tuple(rows[0]) if rows else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._conn.execute(sql, params).rowcount)


def _rollback(pooled: PoolProxiedConnection) -> None:
    """Roll back what failed; a connection too broken to answer is left to the pool."""
    # The failure that got us here is the one to report.
    with contextlib.suppress(Exception):
        pooled.driver_connection.rollback()  # type: ignore[union-attr]


class _Retry(Exception):
    """The connection was closed by the server before the work committed."""


def _storage_failure(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, sqlite3.Error):
        return sqlite_storage_failure(exc)
    return pg_storage_failure(exc)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).splitlines()[0] if exc is not None and str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _sqlite_engine(url: str, synchronous: Synchronous) -> Engine:
    engine = create_engine(
        url,
        pool_size=_POOL_SIZE,
        max_overflow=_MAX_OVERFLOW,
        connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _: ConnectionPoolEntry) -> None:
        # Transactions are ours (BEGIN below), not the driver's implicit ones.
        dbapi_conn.isolation_level = None
        # WAL lets readers proceed while a writer holds the lock.
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock before the first read, so two writers
        # (threads or processes) cannot both read the same latest version or chain head.
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
