"""The stores' schema revisions (Alembic) on SQLite and PostgreSQL: a fresh database is
created at the head; a database the release before revisions wrote is adopted by
`twin-cds db upgrade`, never by the service, which refuses to start (one line naming
the command) and is not ready while any store is behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from cds_service.settings import Settings
from tests.audit.stores import pg_available, pg_schema, pg_url
from twin_cds import db
from twin_cds.app import create_app
from twin_cds.cli import main
from twin_engine.storage import StorageUnavailable
from twin_engine.store.db import Database
from twin_engine.store.migrate import SchemaNotCurrent, upgrade

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(not pg_available(), reason="no PostgreSQL on 127.0.0.1:5432"),
    ),
]
HEADS = {schema.name: schema.head() for schema in db.STORES}


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    data = tmp_path / "data"
    if request.param == "sqlite":
        yield Settings(data_dir=data, auth_required=False)
        return
    with pg_schema() as schema:
        yield Settings(data_dir=data, auth_required=False, database_url=pg_url(schema))


def _sql(settings: Settings, store: str, *statements: str) -> None:
    schema = next(s for s in db.STORES if s.name == store)
    database = Database(db.store_url(settings, schema), store, StorageUnavailable, RuntimeError)
    try:
        database.write(lambda conn: [conn.execute(text(s)) for s in statements])
    finally:
        database.close()


def _as_the_release_before_revisions(settings: Settings) -> None:
    """Every store at the baseline's tables, with no version table (as the previous
    release left them: its tables are what the baseline revisions create)."""
    db.upgrade_all(settings)
    for schema in db.STORES:
        _sql(settings, schema.name, f"DROP TABLE {schema.version_table}")


def test_a_fresh_database_is_created_at_the_head(settings: Settings) -> None:
    """The service starts on nothing, and every store is then at its head revision."""
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["checks"]["schema"]["ok"]
    assert db.current(settings) == {name: f"{head} (head)" for name, head in HEADS.items()}


def test_the_service_refuses_a_database_of_the_release_before(settings: Settings) -> None:
    """An unversioned database is older than this release: the start fails, naming the fix."""
    _as_the_release_before_revisions(settings)
    with pytest.raises(SchemaNotCurrent) as refused:
        create_app(settings)
    message = str(refused.value)
    assert "\n" not in message
    assert message.endswith("run `twin-cds db upgrade`")


def test_serve_says_the_command_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`twin-cds serve` on an older schema exits 1 with one line on stderr, no traceback."""
    _as_the_release_before_revisions(settings)
    monkeypatch.setenv("TWIN_CDS_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("TWIN_CDS_DATABASE_URL", settings.database_url)
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("twin-cds: the twins database is at revision none")
    assert lines[-1].endswith("run `twin-cds db upgrade`")


def test_db_upgrade_adopts_the_release_before_and_keeps_its_rows(settings: Settings) -> None:
    """Adoption stamps the baseline without touching the data: the twin written before
    is read after, and the service starts."""
    _as_the_release_before_revisions(settings)
    _sql(
        settings,
        "twins",
        "INSERT INTO twin_versions VALUES ('p-1', 1, 'h', '2026-01-01T00:00:00+00:00', NULL, '{}')",
    )
    assert set(db.current(settings).values()) == {
        "no revision: written by an earlier release (run `twin-cds db upgrade`)"
    }
    moved = db.upgrade_all(settings)
    assert moved == {n: {"from": "baseline (adopted)", "to": h} for n, h in HEADS.items()}
    assert db.upgrade_all(settings) == {n: {"from": h, "to": h} for n, h in HEADS.items()}
    with TestClient(create_app(settings)) as client:
        twins = client.app.state.runtime.twins  # type: ignore[attr-defined]
        assert twins.versions("p-1")[0].content_hash == "h"


def test_db_upgrade_refuses_tables_that_are_not_the_baseline(settings: Settings) -> None:
    """A table of the store's name but another shape is not adopted (nothing stamped)."""
    _sql(settings, "twins", "CREATE TABLE twin_versions (patient_id TEXT)")
    with pytest.raises(SchemaNotCurrent, match="twin_versions missing or different"):
        db.upgrade_all(settings)
    assert db.current(settings)["twins"].startswith("no revision")


def test_readyz_is_not_ready_when_a_store_falls_behind(settings: Settings) -> None:
    """A store whose revision is no longer the head makes the replica unready, saying
    which store and the command that fixes it."""
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        _sql(settings, "audit", "DELETE FROM twin_cds_revision_audit")
        response = client.get("/readyz")
    assert response.status_code == 503
    check = response.json()["checks"]["schema"]
    assert check["ok"] is False
    assert check["detail"].startswith("audit: revision None is not a0001")
    assert check["detail"].endswith("run `twin-cds db upgrade`")


def test_the_baseline_creates_the_tables_the_statements_use(settings: Settings) -> None:
    """Each baseline revision creates exactly the columns the store's SQLAlchemy tables
    (and adoption) name, so the Core statements and the migrations agree."""
    db.upgrade_all(settings)
    for schema in db.STORES:
        database = Database(
            db.store_url(settings, schema), schema.name, StorageUnavailable, RuntimeError
        )
        try:
            wanted = schema.baseline[database.dialect]
            found = database.read(
                lambda conn, wanted=wanted: {
                    t: frozenset(c["name"] for c in inspect(conn).get_columns(t)) for t in wanted
                }
            )
        finally:
            database.close()
        assert found == wanted


def test_upgrade_of_one_store_does_not_touch_the_others(settings: Settings) -> None:
    """Four stores share one PostgreSQL schema: each keeps its own version table."""
    schema = next(s for s in db.STORES if s.name == "replay")
    database = Database(db.store_url(settings, schema), "replay", StorageUnavailable, RuntimeError)
    try:
        assert upgrade(database, schema) is None
    finally:
        database.close()
    current = db.current(settings)
    assert current["replay"] == f"{HEADS['replay']} (head)"
    assert {current[n] for n in ("twins", "audit", "sessions")} == {"empty"}
