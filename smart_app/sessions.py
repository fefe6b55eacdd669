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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import (
    Column,
    Connection,
    Double,
    LargeBinary,
    MetaData,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.types import REAL

from cds_service.ops.metrics import APP_SESSIONS
from twin_engine.storage import StorageUnavailable
from twin_engine.store.db import Database, sqlite_url
from twin_engine.store.migrate import StoreSchema, ensure_current, schema_check

SessionKind = Literal["pending", "active"]

#: 256 bits of session id (OWASP Session Management: at least 64 bits of entropy).
SESSION_ID_BYTES = 32
_HKDF_INFO = b"twin-cds app session v1"
_NONCE_BYTES = 12  # AES-GCM standard nonce (NIST SP 800-38D)


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


def _table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("id_hash", Text, primary_key=True),
        Column("kind", Text, nullable=False),
        # REAL and BLOB in SQLite, DOUBLE PRECISION and BYTEA in PostgreSQL, as created.
        Column("expires", Double().with_variant(REAL(), "sqlite"), nullable=False),
        Column("sealed", LargeBinary, nullable=False),
    )


#: The table's name is the one each backend had before revisions existed.
TABLES = {
    "sqlite": _table("app_session", MetaData()),
    "postgresql": _table("twin_cds_app_session", MetaData()),
}

SCHEMA = StoreSchema(
    name="sessions",
    versions=Path(__file__).parent / "migrations",
    version_table="twin_cds_revision_sessions",
    baseline={d: {t.name: frozenset(t.columns.keys())} for d, t in TABLES.items()},
)


class _Rows:
    """The statements a session store needs, on SQLite or PostgreSQL (one pool)."""

    def __init__(self, url: str) -> None:
        # Synchronous NORMAL: a session lost to a power cut means signing in again.
        self.db = Database(
            url, "app session", SessionStoreUnavailable, RuntimeError, synchronous="NORMAL"
        )
        ensure_current(self.db, SCHEMA)

    @staticmethod
    def _table(conn: Connection) -> Table:
        return TABLES[conn.dialect.name]

    def purge_and_insert(
        self, now: float, id_hash: str, kind: str, expires: float, sealed: bytes
    ) -> None:
        def work(conn: Connection) -> None:
            t = self._table(conn)
            conn.execute(delete(t).where(t.c.expires < now))
            conn.execute(
                insert(t).values(id_hash=id_hash, kind=kind, expires=expires, sealed=sealed)
            )

        self.db.write(work)

    def select(self, id_hash: str, kind: str) -> tuple[bytes, float] | None:
        def work(conn: Connection) -> Any:
            t = self._table(conn)
            query = select(t.c.sealed, t.c.expires).where(t.c.id_hash == id_hash, t.c.kind == kind)
            return conn.execute(query).first()

        return _row(self.db.read(work))

    def take(self, id_hash: str, kind: str) -> tuple[bytes, float] | None:
        """Read and delete in one statement (DELETE ... RETURNING)."""

        def work(conn: Connection) -> Any:
            t = self._table(conn)
            query = (
                delete(t)
                .where(t.c.id_hash == id_hash, t.c.kind == kind)
                .returning(t.c.sealed, t.c.expires)
            )
            return conn.execute(query).first()

        return _row(self.db.write(work))

    def replace(self, id_hash: str, kind: str, sealed: bytes) -> bool:
        def work(conn: Connection) -> bool:
            t = self._table(conn)
            query = update(t).where(t.c.id_hash == id_hash, t.c.kind == kind).values(sealed=sealed)
            return bool(conn.execute(query).rowcount == 1)

        return self.db.write(work)

    def delete(self, id_hash: str) -> None:
        def work(conn: Connection) -> None:
            t = self._table(conn)
            conn.execute(delete(t).where(t.c.id_hash == id_hash))

        self.db.write(work)

    def close(self) -> None:
        self.db.close()


def _row(row: Any) -> tuple[bytes, float] | None:
    return (bytes(row[0]), float(row[1])) if row is not None else None


class SessionStore:
    """Sessions keyed by the hash of their id, sealed under a key derived from it."""

    def __init__(self, rows: _Rows, *, clock: Callable[[], float] = time.time) -> None:
        self._rows = rows
        self._clock = clock

    @classmethod
    def sqlite(cls, path: Path, *, clock: Callable[[], float] = time.time) -> SessionStore:
        return cls(_Rows(sqlite_url(path)), clock=clock)

    @classmethod
    def postgres(cls, url: str, *, clock: Callable[[], float] = time.time) -> SessionStore:
        return cls(_Rows(url), clock=clock)

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

    def schema_check(self) -> dict[str, str]:
        """Readiness: the database answers and its schema is this release's."""
        return schema_check(self._rows.db, SCHEMA)

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
