"""The hot writes' driver-level path (``Database.write_driver``): its statements say what
the SQLAlchemy tables say, and it keeps the transaction, lock, durability and reconnect
semantics of ``Database.write`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.audit.stores import PG_BASE_URL, pg_available, pg_schema, pg_url
from tests.support.fhir import bundle, patient
from twin_engine import build_twin_from_fhir
from twin_engine.errors import StoreError, TwinStoreUnavailable
from twin_engine.store.db import Database, DriverTx, Synchronous
from twin_engine.store.schema import twin_versions
from twin_engine.store.sql import _SAVE_SQL, SqlTwinStore


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A twin store database on each backend (PostgreSQL: a schema of its own)."""
    if request.param == "sqlite":
        yield f"sqlite+pysqlite:///{tmp_path / 'twins.db'}"
        return
    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:
        yield pg_url(schema)


def _twin(pid: str) -> Any:
    return build_twin_from_fhir(bundle(patient(pid)), patient_id=pid)


def test_the_saves_statements_write_and_read_the_tables_columns(url: str) -> None:
    """The driver's insert fills every column of the table, and its latest-version
    select finds what SQLAlchemy's select over the table finds."""
    store = SqlTwinStore(url)
    try:
        _, latest, insert = _SAVE_SQL[store.db.dialect]
        assert insert.split("(")[1].split(")")[0].split(", ") == list(twin_versions.c.keys())
        for pid in ("a", "b"):
            store.save(_twin(pid))
        store.save(_twin("a"), key="a", as_of="2024-01-01")  # same content: no new version
        store.save(build_twin_from_fhir(bundle(patient("a", gender="male")), patient_id="a"))
        t = twin_versions.c
        for key in ("a", "b", "none"):
            core = select(t.version, t.content_hash, t.created_at, t.as_of)
            core = core.where(t.patient_id == key).order_by(t.version.desc()).limit(1)
            expected = store.db.read(lambda conn, q=core: conn.execute(q).first())
            found = store.db.write_driver(lambda tx, k=key: tx.first(latest, (k,)))
            assert found == (None if expected is None else tuple(expected))
        assert [v.version for v in store.versions("a")] == [1, 2]
    finally:
        store.close()


def test_a_failed_driver_write_leaves_nothing_and_the_next_one_runs(url: str) -> None:
    """A statement the database refuses is ``failed`` (not a 503), its transaction's
    earlier insert is rolled back, and the connection serves the next write."""
    store = SqlTwinStore(url)
    _, latest, insert = _SAVE_SQL[store.db.dialect]
    row = ("k", 1, "h", "2024-01-01T00:00:00+00:00", None, "{}")

    def half(tx: DriverTx) -> None:
        tx.run(insert, row)
        tx.run("SELECT no_such_column FROM twin_versions")

    try:
        with pytest.raises(StoreError) as caught:
            store.db.write_driver(half)
        assert not isinstance(caught.value, TwinStoreUnavailable)
        assert store.db.write_driver(lambda tx: tx.first(latest, ("k",))) is None
        store.db.write_driver(lambda tx: tx.run(insert, row))
        assert store.db.write_driver(lambda tx: tx.first(latest, ("k",))) is not None
    finally:
        store.close()


@pytest.mark.parametrize(("synchronous", "level"), [("FULL", 2), ("NORMAL", 1)])
def test_driver_writes_sync_as_their_store_says(
    tmp_path: Path, synchronous: Synchronous, level: int
) -> None:
    """The pool's connections the hot path uses carry the store's synchronous level."""
    db = Database.sqlite(
        tmp_path / "s.db", "test store", TwinStoreUnavailable, StoreError, synchronous=synchronous
    )
    try:
        assert db.write_driver(lambda tx: tx.rows("PRAGMA synchronous")) == [(level,)]
    finally:
        db.close()


def test_a_sqlite_driver_write_holds_the_write_lock_from_its_start(tmp_path: Path) -> None:
    """Another process cannot take SQLite's write lock while a driver write runs, even
    before the write's first statement (``BEGIN IMMEDIATE``)."""
    path = tmp_path / "twins.db"
    db = Database.sqlite(path, "twin store", TwinStoreUnavailable, StoreError)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)

    def try_to_write(_: DriverTx) -> str:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return str(exc)
        other.execute("ROLLBACK")
        return "the other writer got the lock"

    try:
        assert db.write_driver(try_to_write) == "database is locked"
    finally:
        other.close()
        db.close()


@pytest.mark.skipif(not pg_available(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_a_save_after_every_pooled_backend_was_terminated_runs_once() -> None:
    """A restarted server closes every pooled connection: the first lost one retires
    them all, so the retry runs on a new connection and the save is written once."""
    import psycopg

    name = f"twin-cds-driver-{uuid.uuid4().hex[:10]}"
    with pg_schema() as schema:
        store = SqlTwinStore(f"{pg_url(schema)}&application_name={name}")
        try:
            held = [store.db.engine.raw_connection() for _ in range(3)]
            for conn in held:
                conn.close()  # three idle connections in the pool
            with psycopg.connect(PG_BASE_URL, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (name,),
                ).fetchall()
            assert len(killed) == 3
            time.sleep(0.05)  # let the backends exit (not a timing assertion)
            assert store.save(_twin("p-1")).version == 1
            assert [v.version for v in store.versions("p-1")] == [1]
        finally:
            store.close()


@pytest.mark.parametrize("name", ["synthea_cathryn_windler.json", "edge_cases.json"])
def test_a_save_stores_the_previous_releases_bytes_under_its_hash(url: str, name: str) -> None:
    """The save's one state text is stored byte for byte as the release before wrote it,
    under the content hash that release's audit records name."""
    from tests.twin_engine.test_state import OLD_STATES, STATES
    from twin_engine import Twin

    text = (STATES / name).read_text(encoding="utf-8")
    store = SqlTwinStore(url)
    try:
        saved = store.save(Twin.from_state(json.loads(text)), key="k")
        t = twin_versions.c
        query = select(t.twin_json).where(t.patient_id == "k")
        stored = store.db.read(lambda conn: conn.execute(query).scalar_one())
    finally:
        store.close()
    assert saved.content_hash == OLD_STATES[name]
    assert stored == text


def _connection(tx: DriverTx) -> int:
    return id(tx._conn)


def test_sqlite_driver_writes_reuse_one_held_connection(tmp_path: Path) -> None:
    """Consecutive SQLite hot writes run on the same connection, not a pool round trip."""
    db = Database.sqlite(tmp_path / "s.db", "test store", TwinStoreUnavailable, StoreError)
    try:
        first = db.write_driver(_connection)
        assert db.write_driver(_connection) == first
        assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    finally:
        db.close()
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_failed_sqlite_driver_write_gives_its_connection_back(tmp_path: Path) -> None:
    """After a failed write its connection returns to the pool and the next write works."""
    db = Database.sqlite(tmp_path / "s.db", "test store", TwinStoreUnavailable, StoreError)

    def fail(tx: DriverTx) -> None:
        tx.run("SELECT no_such_column FROM sqlite_master")

    try:
        with pytest.raises(StoreError):
            db.write_driver(fail)
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert db.write_driver(lambda tx: tx.rows("SELECT 1")) == [(1,)]
    finally:
        db.close()
