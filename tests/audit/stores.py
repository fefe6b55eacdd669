"""The audit stores under test: SQLite always, PostgreSQL when 127.0.0.1:5432 answers.

Each PostgreSQL store lives in a schema of its own (dropped afterwards), so test runs and
parallel tests never share a chain. ``raw_sql`` plays the attacker who can write the
store: it turns the append-only triggers off before changing rows.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.settings import Settings
from tests.support.cli import twin_cds

PG_BASE_URL = os.environ.get("TWIN_CDS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(PG_BASE_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def pg_url(schema: str) -> str:
    sep = "&" if "?" in PG_BASE_URL else "?"
    return f"{PG_BASE_URL}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema, dropped with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    name = f"audit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@contextmanager
def service_settings(kind: str, data: Path) -> Iterator[Settings]:
    """The service's settings with its stores in SQLite files under ``data`` or, for
    ``kind == "postgres"``, in a fresh PostgreSQL schema (dropped afterwards)."""
    if kind == "postgres":
        with pg_schema() as schema:
            yield Settings(data_dir=data, auth_required=False, database_url=pg_url(schema))
    else:
        yield Settings(data_dir=data, auth_required=False)


def audit_cli(
    *args: str, settings: Settings | None = None, key: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``twin-cds audit ARGS`` in a subprocess, with none of this process's TWIN_CDS_
    settings; ``settings`` adds its data directory and database, ``key`` the signing key."""
    if settings is not None:
        args += ("--data-dir", str(settings.data_dir))
        if settings.database_url:
            args += ("--database-url", settings.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_CDS_")}
    if key is not None:
        env["TWIN_CDS_AUDIT_SIGNING_KEY_FILE"] = str(key)
    return twin_cds("audit", *args, env=env)


@dataclass(frozen=True)
class StoreSpec:
    """Where a chain lives: a SQLite file or a PostgreSQL URL (with its schema)."""

    kind: str
    sqlite_path: Path | None = None
    pg_url: str | None = None
    opened: list[Any] = field(default_factory=list)

    def open(self, **kwargs: Any) -> Any:
        """A log on this store, closed when the test ends (``close_all``)."""
        from cds_service.audit.sql import SqliteAuditLog

        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            log: Any = SqliteAuditLog(self.sqlite_path, **kwargs)
        else:
            from cds_service.audit.sql import PostgresAuditLog

            assert self.pg_url is not None
            log = PostgresAuditLog(self.pg_url, **kwargs)
        self.opened.append(log)
        return log

    def close_all(self) -> None:
        for log in self.opened:
            log.close()

    def raw_sql(self, *statements: str) -> None:
        """Run statements as someone with write access to the store (triggers off)."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            db = sqlite3.connect(self.sqlite_path, isolation_level=None)
            try:
                db.execute("DROP TRIGGER IF EXISTS audit_chain_no_update")
                db.execute("DROP TRIGGER IF EXISTS audit_chain_no_delete")
                for s in statements:
                    db.execute(s)
            finally:
                db.close()
            return
        import psycopg

        assert self.pg_url is not None
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit_chain DISABLE TRIGGER USER")
            for s in statements:
                conn.execute(s)
            conn.execute("ALTER TABLE audit_chain ENABLE TRIGGER USER")

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            db = sqlite3.connect(self.sqlite_path)
            try:
                return db.execute(query).fetchall()
            finally:
                db.close()
        import psycopg

        assert self.pg_url is not None
        with psycopg.connect(self.pg_url) as conn:
            return conn.execute(query).fetchall()

    def dump_bytes(self) -> bytes:
        """Every stored byte (SQLite files incl. WAL) or every row's text (PostgreSQL)."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            return b"".join(
                p.read_bytes() for p in self.sqlite_path.parent.glob(self.sqlite_path.name + "*")
            )
        out = []
        for table in ("audit_chain", "audit_head", "audit_card", "audit_feedback"):
            out += [repr(r).encode() for r in self.rows(f"SELECT * FROM {table}")]  # noqa: S608
        return b"\n".join(out)
