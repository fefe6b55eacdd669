"""SQLite twin store: versions, no-op saves, old versions, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from tests.twin_engine.fhir import bundle, obs, patient
from twin_engine import SqliteTwinStore, Twin, TwinNotFoundError, build_twin_from_fhir


def _twin(*values: float, pid: str = "p1") -> Twin:
    resources = [
        obs(f"o{i}", "2093-3", v, "mg/dL", f"2024-01-{i + 1:02d}", pid=pid)
        for i, v in enumerate(values)
    ]
    return build_twin_from_fhir(bundle(patient(pid), *resources))


def test_versions_increase_and_old_versions_stay_readable(tmp_path: Path) -> None:
    """Each changed twin is a new version; version 1 still loads as it was."""
    store = SqliteTwinStore(tmp_path / "twins.db")
    v1 = store.save(_twin(200), as_of="2024-01-01")
    v2 = store.save(_twin(200, 180))
    assert (v1.version, v1.created, v2.version, v2.created) == (1, True, 2, True)
    assert [v.version for v in store.versions("p1")] == [1, 2]
    old = store.load("p1", 1)
    assert old.version.content_hash == v1.content_hash
    assert old.version.as_of == "2024-01-01"
    assert old.twin() == _twin(200)
    assert store.load("p1").version.version == 2


def test_same_content_writes_no_new_version(tmp_path: Path) -> None:
    """Saving identical content returns the latest version with created=False."""
    store = SqliteTwinStore(tmp_path / "twins.db")
    first = store.save(_twin(200))
    again = store.save(_twin(200))
    assert (again.version, again.created, again.content_hash) == (1, False, first.content_hash)
    assert len(store.versions("p1")) == 1


def test_wal_mode_and_missing_twins(tmp_path: Path) -> None:
    """The file is in WAL mode; unknown patients and versions raise TwinNotFoundError."""
    path = tmp_path / "twins.db"
    store = SqliteTwinStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(TwinNotFoundError, match="no stored twin of Patient/nobody"):
        store.load("nobody")
    store.save(_twin(200))
    with pytest.raises(TwinNotFoundError, match="version 7"):
        store.load("p1", 7)
    assert store.versions("nobody") == []


def test_concurrent_writers_get_consecutive_versions(tmp_path: Path) -> None:
    """Threads saving different twins at once produce versions 1..N with no gaps."""
    path = tmp_path / "twins.db"
    SqliteTwinStore(path)
    twins = [_twin(100 + i) for i in range(16)]
    barrier = threading.Barrier(len(twins))
    results: list[int] = []
    lock = threading.Lock()

    def write(twin: Twin) -> None:
        store = SqliteTwinStore(path)
        barrier.wait()
        version = store.save(twin)
        with lock:
            results.append(version.version)

    threads = [threading.Thread(target=write, args=(t,)) for t in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, len(twins) + 1))
    stored = SqliteTwinStore(path).versions("p1")
    assert [v.version for v in stored] == list(range(1, len(twins) + 1))
