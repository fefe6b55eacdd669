"""Every shared Synthea patient ingests and gets a 200 from the patient-view hook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cds_service.settings import Settings
from tests.conftest import hook_request, load_json, prefetch_from_bundle, synthea_bundles
from twin_cds.app import create_app

pytestmark = pytest.mark.corpus

BUNDLES = synthea_bundles()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("corpus"), auth_required=False)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.skipif(not BUNDLES, reason="shared Synthea corpus not present")
@pytest.mark.parametrize("path", BUNDLES, ids=[p.name.split("_")[0] for p in BUNDLES])
def test_every_corpus_patient_gets_a_200(client: TestClient, path: Path) -> None:
    """Prefetch built from the patient's bundle answers 200 with at most one card."""
    prefetch = prefetch_from_bundle(load_json(path))
    response = client.post(
        "/cds-services/ascvd-risk", json=hook_request(prefetch["patient"]["id"], prefetch)
    )
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) <= 1
