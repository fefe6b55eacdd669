"""The auditor API's replay and self-check: auditors only, tenant-bound, reads on the chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.audit.log import ChainedAuditLog
from cds_service.http.auth import CdsClientConfig
from cds_service.settings import Settings
from tests.audit.test_api import (
    AUDITOR_KEY,
    BASE,
    CLIENT_KEY,
    EHR,
    IDP,
    _get,
    _hook,
    _jwks,
    _token,
    auditor_token,
)
from tests.conftest import prefetch_from_bundle
from twin_cds.app import create_app

IDP_B = "https://idp.hospital-b.example"
KEY_B = ec.generate_private_key(ec.SECP384R1())


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data",
        public_base_url=BASE,
        clients=(CdsClientConfig(iss=EHR, jwks=_jwks(CLIENT_KEY, "ehr-1"), tenant="hospital-a"),),
        auditors=(
            AuditorIssuerConfig(iss=IDP, jwks=_jwks(AUDITOR_KEY, "idp-1")),
            AuditorIssuerConfig(iss=IDP_B, jwks=_jwks(KEY_B, "b-1"), tenant="hospital-b"),
        ),
    )
    with TestClient(create_app(settings)) as c:
        yield c


def _auditor_b() -> str:
    return _token(KEY_B, "b-1", iss=IDP_B, aud=f"{BASE}/audit", sub="bob", role="auditor")


def _reads(c: TestClient, action: str) -> list[dict[str, Any]]:
    log: ChainedAuditLog = c.app.state.runtime.audit  # type: ignore[attr-defined]
    return [r.body for r in log.records(kind="auditor-read") if r.body["action"] == action]


def test_an_auditor_replays_a_record_over_the_api(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """GET /audit/records/{seq}/replay answers byte-identical, and the read is on the chain."""
    _hook(client, prefetch_from_bundle(demo_bundles[0]), "api-replay-1")
    response = _get(client, "/audit/records/1/replay", auditor_token())
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "identical"
    assert [r["seqs"] for r in _reads(client, "replay")] == [[1]]


def test_another_tenants_record_is_not_replayed(
    client: TestClient, demo_bundles: list[dict[str, Any]]
) -> None:
    """An auditor bound to hospital-b gets 404 for hospital-a's record, and the refusal is read."""
    _hook(client, prefetch_from_bundle(demo_bundles[0]), "api-replay-2")
    response = _get(client, "/audit/records/1/replay", _auditor_b())
    assert response.status_code == 404
    assert [r["seqs"] for r in _reads(client, "replay")] == [[]]


def test_selfcheck_needs_an_auditor_and_is_on_the_chain(client: TestClient) -> None:
    """Anonymous calls get 401; an auditor's self-check (no forecasts yet) is an audited read."""
    assert _get(client, "/audit/selfcheck", None).status_code == 401
    response = _get(client, "/audit/selfcheck", _auditor_b())
    assert response.status_code == 200
    assert response.json()["models"] == []
    assert [r["query"] for r in _reads(client, "selfcheck")] == [{"tenant": "hospital-b"}]


def test_a_tenant_bound_auditor_is_refused_the_whole_chain_report(client: TestClient) -> None:
    """GET /audit/verify covers every tenant: 403 for hospital-b's auditor, on the chain."""
    response = _get(client, "/audit/verify", _auditor_b())
    assert response.status_code == 403
    assert "hospital-b" in response.json()["detail"]
    assert [r["query"] for r in _reads(client, "verify")] == [{"refused": "tenant-bound auditor"}]


def test_an_auditor_of_no_tenant_verifies_the_chain(client: TestClient) -> None:
    """The deployment's own auditor gets the chain report, and the read is on the chain."""
    response = _get(client, "/audit/verify", auditor_token())
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    assert [r["query"] for r in _reads(client, "verify")] == [{}]
