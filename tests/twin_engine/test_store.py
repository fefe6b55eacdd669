"""Twin stores (SQLite, and PostgreSQL where it answers): versions, no-op saves, old
versions, missing twins, concurrent writers in several connections (replicas)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.fhir import bundle, obs, patient
from twin_engine import SqliteTwinStore, Twin, TwinNotFoundError, build_twin_from_fhir
from twin_engine.store import TwinStore

StoreFactory = Callable[[], TwinStore]


def _twin(*values: float, pid: str = "p1") -> Twin:
    resources = [
        obs(f"o{i}", "2093-3", v, "mg/dL", f"2024-01-{i + 1:02d}", pid=pid)
        for i, v in enumerate(values)
    ]
    return build_twin_from_fhir(bundle(patient(pid), *resources))


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Makes stores on one database: each call is another connection (another replica)."""
    opened: list[TwinStore] = []
    if request.param == "sqlite":

        def sqlite_store() -> TwinStore:
            opened.append(SqliteTwinStore(tmp_path / "twins.db"))
            return opened[-1]

        yield sqlite_store
        return
    from tests.audit.stores import pg_available, pg_schema, pg_url
    from twin_engine.store import PostgresTwinStore

    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:

        def pg_store() -> TwinStore:
            opened.append(PostgresTwinStore(pg_url(schema)))
            return opened[-1]

        try:
            yield pg_store
        finally:
            for store in opened:
                store.close()


def test_versions_increase_and_old_versions_stay_readable(new_store: StoreFactory) -> None:
    """Each changed twin is a new version; version 1 still loads as it was."""
    store = new_store()
    v1 = store.save(_twin(200), as_of="2024-01-01")
    v2 = store.save(_twin(200, 180))
    assert (v1.version, v1.created, v2.version, v2.created) == (1, True, 2, True)
    assert [v.version for v in store.versions("p1")] == [1, 2]
    old = store.load("p1", 1)
    assert old.version.content_hash == v1.content_hash
    assert old.version.as_of == "2024-01-01"
    assert old.twin() == _twin(200)
    assert store.load("p1").version.version == 2


def test_same_content_writes_no_new_version(new_store: StoreFactory) -> None:
    """Saving identical content returns the latest version with created=False."""
    store = new_store()
    first = store.save(_twin(200))
    again = store.save(_twin(200))
    assert (again.version, again.created, again.content_hash) == (1, False, first.content_hash)
    assert len(store.versions("p1")) == 1


def test_keys_keep_tenants_apart(new_store: StoreFactory) -> None:
    """Two EHRs' patient "p1" are two twins when saved under tenant keys."""
    store = new_store()
    store.save(_twin(200), key="hospital-a|p1")
    store.save(_twin(150), key="hospital-b|p1")
    assert store.load("hospital-a|p1").twin() == _twin(200)
    assert store.load("hospital-b|p1").twin() == _twin(150)
    assert [v.version for v in store.versions("hospital-b|p1")] == [1]


def test_missing_twins(new_store: StoreFactory) -> None:
    """Unknown patients and versions raise TwinNotFoundError."""
    store = new_store()
    with pytest.raises(TwinNotFoundError, match="no stored twin of Patient/nobody"):
        store.load("nobody")
    store.save(_twin(200))
    with pytest.raises(TwinNotFoundError, match="version 7"):
        store.load("p1", 7)
    assert store.versions("nobody") == []


def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "twins.db"
    SqliteTwinStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_get_consecutive_versions(new_store: StoreFactory) -> None:
    """Writers in separate connections (replicas) saving different twins at once produce
    versions 1..N with no gaps and no duplicates."""
    new_store()  # creates the schema before the race
    twins = [_twin(100 + i) for i in range(16)]
    stores = [new_store() for _ in twins]
    barrier = threading.Barrier(len(twins))
    results: list[int] = []
    lock = threading.Lock()

    def write(store: TwinStore, twin: Twin) -> None:
        barrier.wait()
        version = store.save(twin)
        with lock:
            results.append(version.version)

    threads = [
        threading.Thread(target=write, args=(s, t)) for s, t in zip(stores, twins, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, len(twins) + 1))
    stored = new_store().versions("p1")
    assert [v.version for v in stored] == list(range(1, len(twins) + 1))
