"""Fixtures of the audit tests: a chain in each store, a signing key, a hook entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.audit.log import (
    AuditEntry,
    AuditSigner,
    ModelUse,
    generate_demo_signing_key,
    load_signer,
)
from tests.audit.stores import StoreSpec, pg_available, pg_schema, pg_url

STORES = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(not pg_available(), reason="no PostgreSQL on 127.0.0.1:5432"),
    ),
]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    if request.param == "sqlite":
        spec = StoreSpec("sqlite", sqlite_path=tmp_path / "audit.sqlite")
        yield spec
        spec.close_all()
        return
    with pg_schema() as schema:
        spec = StoreSpec("postgres", pg_url=pg_url(schema))
        yield spec
        spec.close_all()


@pytest.fixture()
def signer(tmp_path: Path) -> AuditSigner:
    return load_signer(generate_demo_signing_key(tmp_path / "keys"))


def entry(n: int, patient: str = "p1", **overrides: object) -> AuditEntry:
    """A hook call as the pipeline records it, with one card."""
    fields: dict[str, object] = {
        "hook_instance": f"hook-{n}",
        "hook": "patient-view",
        "service_id": "ascvd-risk",
        "patient_id": patient,
        "status": "ok",
        "duration_ms": 12.5,
        "twin_version": 1,
        "twin_hash": "ab" * 32,
        "model": ModelUse("pce", "1.0.0", "cd" * 32),
        "inputs": (
            {
                "name": "total_cholesterol_mg_dl",
                "value": 213.0,
                "unit": "mg/dL",
                "time": "2025-01-02T00:00:00+00:00",
                "sources": ["Observation/tc-1"],
                "quality": "ok",
            },
        ),
        "outputs": {"risk_10y_ascvd": 0.123},
        "explanation": (
            {"feature": "age_years", "value": 61.0, "baselineValue": 55.0, "contribution": 0.02},
        ),
        "cards": ({"uuid": f"card-{n}", "summary": "10-year ASCVD risk 12.3%"},),
        "client_iss": "https://ehr.example",
        "client_tenant": "hospital-a",
        "client_jti": f"jti-{n}",
        "user_id": "Practitioner/p1",
    }
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]
