"""Server-side sessions of the clinician app (the backend-for-frontend keeps the tokens).

The browser holds only an opaque, random session id in an HttpOnly cookie. The store
never holds that id: rows are keyed by its SHA-256, and each row's contents (the EHR's
access token among them) are sealed with AES-256-GCM under a key derived from the id
(HKDF-SHA256). A copy of the database alone therefore yields no usable token, and a
session can be read only by the browser that holds its cookie.

SQLite under the data directory (WAL mode), so the workers of one host share sessions;
PostgreSQL when ``TWIN_CDS_DATABASE_URL`` is set, so replicas on several hosts do. A
``pending`` session lives from launch to callback and is taken (read and deleted in
one statement) at the callback, so a state, code verifier or nonce is used once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cds_service.ops.metrics import APP_SESSIONS
from twin_engine.storage import ReconnectingPg, StorageUnavailable, sqlite_storage_failure

SessionKind = Literal["pending", "active"]

#: 256 bits of session id (OWASP Session Management: at least 64 bits of entropy).
SESSION_ID_BYTES = 32
_HKDF_INFO = b"twin-cds app session v1"
_NONCE_BYTES = 12  # AES-GCM standard nonce (NIST SP 800-38D)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS app_session (
    id_hash  TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    expires  REAL NOT NULL,
    sealed   BLOB NOT NULL
)
"""


class SessionStoreUnavailable(StorageUnavailable):
    """The app's session store could not be reached or written."""


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _cipher(session_id: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        session_id.encode("utf-8")
    )
    return AESGCM(key)


def _seal(session_id: str, id_hash: str, kind: str, data: dict[str, Any]) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _cipher(session_id).encrypt(
        nonce, json.dumps(data).encode("utf-8"), f"{id_hash}|{kind}".encode()
    )


class _Rows(Protocol):
    """The four statements a session store needs, in one database or another."""

    def purge_and_insert(
        self, now: float, id_hash: str, kind: str, expires: float, sealed: bytes
    ) -> None: ...

    def select(self, id_hash: str, kind: str) -> tuple[bytes, float] | None: ...

    def take(self, id_hash: str, kind: str) -> tuple[bytes, float] | None: ...

    def replace(self, id_hash: str, kind: str, sealed: bytes) -> bool: ...

    def delete(self, id_hash: str) -> None: ...

    def close(self) -> None: ...


class _SqliteRows:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self._path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise SessionStoreUnavailable(f"app sessions {self._path}: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:
            if sqlite_storage_failure(exc):
                raise SessionStoreUnavailable(f"app sessions {self._path}: {exc}") from exc
            raise
        finally:
            db.close()

    def purge_and_insert(
        self, now: float, id_hash: str, kind: str, expires: float, sealed: bytes
    ) -> None:
        with self._db() as db:
            db.execute("DELETE FROM app_session WHERE expires < ?", (now,))
            db.execute(
                "INSERT INTO app_session (id_hash, kind, expires, sealed) VALUES (?, ?, ?, ?)",
                (id_hash, kind, expires, sealed),
            )

    def select(self, id_hash: str, kind: str) -> tuple[bytes, float] | None:
        with self._db() as db:
            row = db.execute(
                "SELECT sealed, expires FROM app_session WHERE id_hash = ? AND kind = ?",
                (id_hash, kind),
            ).fetchone()
        return (bytes(row[0]), float(row[1])) if row else None

    def take(self, id_hash: str, kind: str) -> tuple[bytes, float] | None:
        with self._db() as db:
            row = db.execute(
                "DELETE FROM app_session WHERE id_hash = ? AND kind = ? RETURNING sealed, expires",
                (id_hash, kind),
            ).fetchone()
        return (bytes(row[0]), float(row[1])) if row else None

    def replace(self, id_hash: str, kind: str, sealed: bytes) -> bool:
        with self._db() as db:
            cur = db.execute(
                "UPDATE app_session SET sealed = ? WHERE id_hash = ? AND kind = ?",
                (sealed, id_hash, kind),
            )
        return cur.rowcount == 1

    def delete(self, id_hash: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM app_session WHERE id_hash = ?", (id_hash,))

    def close(self) -> None:
        """Connections are per call; nothing stays open."""


class _PostgresRows:
    """The same table in PostgreSQL, one connection per store behind a lock, reopened
    (and the statement run once more) when the server closed it before it committed."""

    def __init__(self, url: str) -> None:
        self._db = ReconnectingPg(url, "app session", SessionStoreUnavailable, RuntimeError)
        self._run(
            "CREATE TABLE IF NOT EXISTS twin_cds_app_session (id_hash TEXT PRIMARY KEY, "
            "kind TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL, sealed BYTEA NOT NULL)",
            (),
        )

    def _run(self, sql: str, params: tuple[Any, ...]) -> Any:
        """Run one statement in its own transaction; its first row when it returns rows."""

        def work(conn: Any) -> Any:
            cur = conn.execute(sql, params)
            return cur.fetchone() if cur.description is not None else None

        return self._db.run(work)

    def purge_and_insert(
        self, now: float, id_hash: str, kind: str, expires: float, sealed: bytes
    ) -> None:
        self._run("DELETE FROM twin_cds_app_session WHERE expires < %s", (now,))
        self._run(
            "INSERT INTO twin_cds_app_session (id_hash, kind, expires, sealed) "
            "VALUES (%s, %s, %s, %s)",
            (id_hash, kind, expires, sealed),
        )

    def select(self, id_hash: str, kind: str) -> tuple[bytes, float] | None:
        row = self._run(
            "SELECT sealed, expires FROM twin_cds_app_session WHERE id_hash = %s AND kind = %s",
            (id_hash, kind),
        )
        return (bytes(row[0]), float(row[1])) if row else None

    def take(self, id_hash: str, kind: str) -> tuple[bytes, float] | None:
        row = self._run(
            "DELETE FROM twin_cds_app_session WHERE id_hash = %s AND kind = %s "
            "RETURNING sealed, expires",
            (id_hash, kind),
        )
        return (bytes(row[0]), float(row[1])) if row else None

    def replace(self, id_hash: str, kind: str, sealed: bytes) -> bool:
        row = self._run(
            "UPDATE twin_cds_app_session SET sealed = %s WHERE id_hash = %s AND kind = %s "
            "RETURNING 1",
            (sealed, id_hash, kind),
        )
        return row is not None

    def delete(self, id_hash: str) -> None:
        self._run("DELETE FROM twin_cds_app_session WHERE id_hash = %s", (id_hash,))

    def close(self) -> None:
        self._db.close()


class SessionStore:
    """Sessions keyed by the hash of their id, sealed under a key derived from it."""

    def __init__(self, rows: _Rows, *, clock: Callable[[], float] = time.time) -> None:
        self._rows = rows
        self._clock = clock

    @classmethod
    def sqlite(cls, path: Path, *, clock: Callable[[], float] = time.time) -> SessionStore:
        return cls(_SqliteRows(path), clock=clock)

    @classmethod
    def postgres(cls, url: str, *, clock: Callable[[], float] = time.time) -> SessionStore:
        return cls(_PostgresRows(url), clock=clock)

    def create(self, kind: SessionKind, data: dict[str, Any], ttl_s: float) -> str:
        """Store ``data`` under a new session id and return the id (for the cookie only)."""
        session_id = new_session_id()
        id_hash = _id_hash(session_id)
        sealed = _seal(session_id, id_hash, kind, data)
        now = self._clock()
        self._rows.purge_and_insert(now, id_hash, kind, now + ttl_s, sealed)
        APP_SESSIONS.labels(kind).inc()
        return session_id

    def get(self, session_id: str | None, kind: SessionKind) -> dict[str, Any] | None:
        """The session's data, or None when unknown, of another kind, or expired."""
        if not session_id:
            return None
        id_hash = _id_hash(session_id)
        return self._open(session_id, id_hash, kind, self._rows.select(id_hash, kind))

    def take(self, session_id: str | None, kind: SessionKind) -> dict[str, Any] | None:
        """Read and delete in one statement: a pending launch is used at most once."""
        if not session_id:
            return None
        id_hash = _id_hash(session_id)
        return self._open(session_id, id_hash, kind, self._rows.take(id_hash, kind))

    def replace(self, session_id: str, kind: SessionKind, data: dict[str, Any]) -> bool:
        """Seal new contents into an existing session (same id, same expiry), e.g. the
        tokens of a refresh; False when the session is gone."""
        id_hash = _id_hash(session_id)
        return self._rows.replace(id_hash, kind, _seal(session_id, id_hash, kind, data))

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._rows.delete(_id_hash(session_id))

    def close(self) -> None:
        self._rows.close()

    def _open(
        self, session_id: str, id_hash: str, kind: str, row: tuple[bytes, float] | None
    ) -> dict[str, Any] | None:
        if row is None:
            return None
        sealed, expires = row
        if expires < self._clock():
            return None
        try:
            plain = _cipher(session_id).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], f"{id_hash}|{kind}".encode()
            )
        except InvalidTag:
            return None
        data: dict[str, Any] = json.loads(plain)
        return data
