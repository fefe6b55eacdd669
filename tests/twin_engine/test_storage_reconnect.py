"""PostgreSQL stores survive the server closing their connection (a terminated backend,
a restart, a failover): the next call reconnects and runs once more, nothing is lost or
doubled; a server that refuses connections is StorageUnavailable, not a config error.

Only this test's own connections are terminated (found by their application_name)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.audit.stores import PG_BASE_URL, pg_available, pg_schema, pg_url
from tests.support.fhir import bundle, patient
from twin_engine import build_twin_from_fhir
from twin_engine.storage import StorageUnavailable

pytestmark = pytest.mark.skipif(not pg_available(), reason="no PostgreSQL on 127.0.0.1:5432")


@pytest.fixture()
def own_url() -> Iterator[tuple[str, str]]:
    """A schema of this test's own and a URL whose connections carry a unique name."""
    name = f"twin-cds-reconnect-{uuid.uuid4().hex[:10]}"
    with pg_schema() as schema:
        yield f"{pg_url(schema)}&application_name={name}", name


def _terminate(application_name: str) -> int:
    import psycopg

    with psycopg.connect(PG_BASE_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    time.sleep(0.05)  # let the backends exit before the next statement (not a timing assertion)
    return len(rows)


def _twin(pid: str) -> Any:
    return build_twin_from_fhir(bundle(patient(pid)), patient_id=pid)


def test_the_twin_store_saves_once_after_its_backend_was_terminated(
    own_url: tuple[str, str],
) -> None:
    """The save after a terminated backend succeeds, and writes exactly one version."""
    from twin_engine.store import PostgresTwinStore

    url, name = own_url
    store = PostgresTwinStore(url)
    try:
        store.save(_twin("p-1"))
        assert _terminate(name) == 1
        saved = store.save(_twin("p-2"))
        assert saved.created and saved.version == 1
        assert [v.version for v in store.versions("p-2")] == [1]
    finally:
        store.close()


def test_the_audit_log_appends_once_after_its_backend_was_terminated(
    own_url: tuple[str, str],
) -> None:
    """The append after a terminated backend is written once, and the chain verifies."""
    from cds_service.audit.log import AuditEntry
    from cds_service.audit.sql import PostgresAuditLog

    url, name = own_url
    log = PostgresAuditLog(url)
    entry = AuditEntry("h-1", "patient-view", "ascvd-risk", "p-1", "ok", 1.0)
    try:
        log.record(entry)
        assert _terminate(name) == 1
        log.record(AuditEntry("h-2", "patient-view", "ascvd-risk", "p-1", "ok", 1.0))
        assert [r.body["hookInstance"] for r in log.records()] == ["h-1", "h-2"]
        assert log.verify().first_bad is None
    finally:
        log.close()


def test_the_replay_cache_is_not_fooled_by_a_terminated_backend(
    own_url: tuple[str, str],
) -> None:
    """A jti first seen after the cache's connection died is a first use, not a replay."""
    from cds_service.http.auth import PostgresReplayCache

    url, name = own_url
    cache = PostgresReplayCache(url)
    try:
        assert cache.first_use("iss", "jti-1", time.time() + 60)
        assert _terminate(name) == 1
        assert cache.first_use("iss", "jti-2", time.time() + 60)
        assert not cache.first_use("iss", "jti-2", time.time() + 60)
    finally:
        cache.close()


def test_app_sessions_survive_a_terminated_backend(own_url: tuple[str, str]) -> None:
    """A session written before the connection died is read after it."""
    from smart_app.sessions import SessionStore

    url, name = own_url
    store = SessionStore.postgres(url)
    try:
        sid = store.create("active", {"patient": "p-1"}, 60)
        assert _terminate(name) == 1
        assert store.get(sid, "active") == {"patient": "p-1"}
    finally:
        store.close()


REFUSING = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2"


def _twins() -> Any:
    from twin_engine.store import PostgresTwinStore

    return PostgresTwinStore(REFUSING)


def _replay() -> Any:
    from cds_service.http.auth import PostgresReplayCache

    return PostgresReplayCache(REFUSING)


def _sessions() -> Any:
    from smart_app.sessions import SessionStore

    return SessionStore.postgres(REFUSING)


@pytest.mark.parametrize(
    "open_store", [_twins, _replay, _sessions], ids=["twins", "replay", "sessions"]
)
def test_a_refused_connection_is_storage_unavailable(open_store: Callable[[], Any]) -> None:
    """Nothing listening: the store says its storage is unavailable (a 503 at the edge)."""
    with pytest.raises(StorageUnavailable):
        open_store()
