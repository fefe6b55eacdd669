"""With TWIN_CDS_DATABASE_URL the service keeps twins (and sessions, audit, replay cache)
in PostgreSQL, so a card's twin version can be opened by any replica."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.audit.stores import pg_available, pg_schema, pg_url
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app
from twin_engine.store import PostgresTwinStore


def test_a_cards_twin_version_is_in_postgresql(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:
        url = pg_url(schema)
        settings = Settings(data_dir=tmp_path / "data", auth_required=False, database_url=url)
        prefetch = prefetch_from_bundle(demo_bundles[0])
        patient = prefetch["patient"]["id"]
        with TestClient(create_app(settings)) as client:
            response = client.post("/cds-services/ascvd-risk", json=hook_request(patient, prefetch))
        assert response.status_code == 200
        (card,) = response.json()["cards"]
        context = json.loads(card["links"][0]["appContext"])
        replica = PostgresTwinStore(url)  # another process would open it the same way
        try:
            stored = replica.load(patient, context["twinVersion"])
        finally:
            replica.close()
        assert stored.twin().patient_id == patient
        assert not (tmp_path / "data" / "twins.sqlite").exists()
        assert not (tmp_path / "data" / "app_sessions.sqlite").exists()
