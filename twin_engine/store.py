"""Versioned twin store: a port (`TwinStore`) and its SQLite adapter.

Every save of a changed twin writes a new version (1, 2, 3, ... per patient) holding
the twin's canonical state JSON and its content hash; earlier versions stay readable,
so the state behind any past recommendation can be reconstructed with
`Twin.from_state(store.load(pid, version).twin_json)`.  The raw FHIR is not stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from twin_engine.errors import StoreError, TwinNotFoundError, TwinStoreUnavailable
from twin_engine.storage import sqlite_storage_failure
from twin_engine.twin import Twin

#: One table, the same in SQLite and PostgreSQL.
SCHEMA = """
CREATE TABLE IF NOT EXISTS twin_versions (
    patient_id   TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    content_hash TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    as_of        TEXT,
    twin_json    TEXT    NOT NULL,
    PRIMARY KEY (patient_id, version)
)
"""
# Several service workers may write at once; wait for the lock rather than fail.
_BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class TwinVersion:
    """One stored version.  `created` is True only on the value returned by the
    `save` call that wrote it (False when that save found identical content)."""

    patient_id: str
    version: int
    content_hash: str
    created_at: datetime
    as_of: str | None = None
    created: bool = False


@dataclass(frozen=True, slots=True)
class StoredTwin:
    version: TwinVersion
    twin_json: dict[str, Any]

    def twin(self) -> Twin:
        return Twin.from_state(self.twin_json)


class TwinStore(Protocol):
    """Port: where twin versions live (SQLite by default, PostgreSQL when scaled out)."""

    def save(
        self, twin: Twin, *, as_of: str | None = None, key: str | None = None
    ) -> TwinVersion: ...

    def load(self, patient_id: str, version: int | None = None) -> StoredTwin: ...

    def versions(self, patient_id: str) -> list[TwinVersion]: ...

    def close(self) -> None: ...


def store_key(scope: str | None, patient_id: str) -> str | None:
    """The key a twin is saved under: ``"<tenant or issuer>|<patient id>"``, because a
    patient id is unique only within one EHR; None (the patient id) without a scope."""
    return f"{scope}|{patient_id}" if scope else None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SqliteTwinStore:
    """`TwinStore` on one SQLite file in WAL mode, safe for concurrent writers.

    Each `save` runs in a `BEGIN IMMEDIATE` transaction, so two writers never both
    read version N and both write N+1.  Each thread keeps one connection for the
    store's life: opening and closing one per call (and the WAL checkpoint a last close
    runs) cost ~2 ms of a new patient's hook call (bench/profile_cold.py).
    """

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._path = Path(path)
        self._clock = clock
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._open: list[sqlite3.Connection] = []
        self._open_lock = threading.Lock()
        with self._connect() as conn:
            # WAL lets readers proceed while a writer holds the lock.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self._path,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise TwinStoreUnavailable(f"cannot open twin store {self._path}: {exc}") from exc
            self._local.conn = conn
            with self._open_lock:
                self._open.append(conn)
        try:
            yield conn
        except sqlite3.Error as exc:
            # A failed connection is not kept: the next call opens a fresh one.
            self._forget(conn)
            kind = TwinStoreUnavailable if sqlite_storage_failure(exc) else StoreError
            raise kind(f"twin store {self._path} failed: {exc}") from exc

    def _forget(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._open_lock:
            if conn in self._open:
                self._open.remove(conn)
        conn.close()

    def save(self, twin: Twin, *, as_of: str | None = None, key: str | None = None) -> TwinVersion:
        """Write a new version unless the latest has the same content hash.

        Same content: returns the latest version (created=False) and writes nothing.
        ``key`` names whose twin this is when patient ids are not unique across the EHRs
        a service answers (e.g. ``"<tenant>|<patient id>"``); default: the patient id.
        """
        store_key = key if key is not None else twin.patient_id
        content_hash = twin.content_hash()
        # The connection is kept open, and an open file stays writable when the data
        # directory is made read-only (or remounted so): ask, as opening it used to.
        if not os.access(self._path, os.W_OK):
            raise TwinStoreUnavailable(f"twin store {self._path} is not writable")
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(LATEST_SQL, (store_key,)).fetchone()
                if row is not None and row[1] == content_hash:
                    conn.execute("ROLLBACK")
                    return _version(store_key, row)
                number = 1 if row is None else int(row[0]) + 1
                created_at = self._clock()
                # Serialised only when a version is written: most refreshes change nothing.
                row_values = (store_key, number, content_hash, created_at.isoformat(), as_of)
                conn.execute(INSERT_SQL, (*row_values, state_json(twin)))
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (full disk) has already rolled back: ROLLBACK then
                # would raise "no transaction is active" and hide the real error.
                if conn.in_transaction:
                    # If ROLLBACK fails too, the error being raised is the one to report.
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        return TwinVersion(store_key, number, content_hash, created_at, as_of, created=True)

    def load(self, patient_id: str, version: int | None = None) -> StoredTwin:
        """The given version (default: the latest) of a patient's twin."""
        query, params = load_query(patient_id, version)
        with self._connect() as conn:
            row = conn.execute(query, params).fetchone()
        return stored_twin(patient_id, version, row)

    def versions(self, patient_id: str) -> list[TwinVersion]:
        """All versions of a patient's twin, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(VERSIONS_SQL, (patient_id,)).fetchall()
        return [_version(patient_id, row) for row in rows]

    def close(self) -> None:
        """Close every thread's connection (the app calls this when it stops)."""
        with self._open_lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
        self._local = threading.local()


# The statements both stores run, in SQLite's "?" style (PostgreSQL: "%s").
LATEST_SQL = (
    "SELECT version, content_hash, created_at, as_of FROM twin_versions "
    "WHERE patient_id = ? ORDER BY version DESC LIMIT 1"
)
VERSIONS_SQL = (
    "SELECT version, content_hash, created_at, as_of FROM twin_versions "
    "WHERE patient_id = ? ORDER BY version"
)
INSERT_SQL = "INSERT INTO twin_versions VALUES (?, ?, ?, ?, ?, ?)"


def load_query(patient_id: str, version: int | None) -> tuple[str, tuple[object, ...]]:
    """The statement and parameters reading one version (None: the latest)."""
    query = (
        "SELECT version, content_hash, created_at, as_of, twin_json FROM twin_versions "
        "WHERE patient_id = ? "
    )
    if version is None:
        return query + "ORDER BY version DESC LIMIT 1", (patient_id,)
    return query + "AND version = ?", (patient_id, version)


def stored_twin(patient_id: str, version: int | None, row: Any) -> StoredTwin:
    """The row ``load_query`` found, or TwinNotFoundError naming what was asked for."""
    if row is None:
        which = "any version" if version is None else f"version {version}"
        raise TwinNotFoundError(f"no stored twin of Patient/{patient_id} ({which})")
    return StoredTwin(_version(patient_id, row[:4]), json.loads(row[4]))


def state_json(twin: Twin) -> str:
    """The canonical state text a version stores (``Twin.from_state`` reads it back)."""
    return json.dumps(twin.to_state(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _version(patient_id: str, row: tuple[Any, ...]) -> TwinVersion:
    return TwinVersion(
        patient_id=patient_id,
        version=int(row[0]),
        content_hash=str(row[1]),
        created_at=datetime.fromisoformat(row[2]),
        as_of=row[3],
    )
