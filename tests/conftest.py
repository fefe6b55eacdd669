"""Fixtures shared by the test packages: patients, prefetch and the shared corpus."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.fhir import searchset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TWIN_CDS_SHARED_DATA", REPO.parent / "shared" / "data"))
SYNTHEA_DIR = SHARED_DATA / "synthea-r4"


def synthea_bundles() -> list[Path]:
    return sorted(SYNTHEA_DIR.glob("*.json")) if SYNTHEA_DIR.is_dir() else []


def _by_type(bundle: dict[str, Any], *types: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] in types]


def with_ids(bundle: dict[str, Any]) -> dict[str, Any]:
    """A copy whose resources carry the ids their urn:uuid fullUrls give them,
    as a FHIR server would assign ids on a transaction."""
    out = copy.deepcopy(bundle)
    for e in out["entry"]:
        full = e.get("fullUrl", "")
        if "id" not in e["resource"] and full.startswith("urn:uuid:"):
            e["resource"]["id"] = full.removeprefix("urn:uuid:")
    return out


def prefetch_from_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """Split a patient's bundle into the prefetch keys the ascvd-risk service asks for."""
    b = with_ids(bundle)
    return {
        "patient": _by_type(b, "Patient")[0],
        "observations": searchset(*_by_type(b, "Observation")),
        "conditions": searchset(*_by_type(b, "Condition")),
        "medications": searchset(*_by_type(b, "MedicationRequest")),
        "procedures": searchset(*_by_type(b, "Procedure")),
    }


def hook_request(
    patient_id: str, prefetch: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "2a3b1c7e-0000-4000-8000-00000000c0de",
        "context": {"userId": "Practitioner/p1", "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


@pytest.fixture(scope="session")
def demo_bundles() -> list[dict[str, Any]]:
    from ehr_sim.patients import generate_patients

    return generate_patients(8, seed=7)


@pytest.fixture()
def settings(tmp_path: Path) -> Any:
    from cds_service.settings import Settings

    return Settings(data_dir=tmp_path / "data", fhir_server_allowlist=("http://127.0.0.1:9/fhir",))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
