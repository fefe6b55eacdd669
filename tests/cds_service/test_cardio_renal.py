"""The cardio-renal-risk service: PREVENT, KFRE in chronic CKD G3-G5, orders when
laboratory inputs are missing or too old."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.settings import Settings
from tests.conftest import hook_request
from tests.support.fhir import bp, obs, patient, smoking
from twin_cds.app import create_app

TODAY = date(2026, 6, 1)
FRESH = "2026-05-01T09:00:00Z"


def _client(tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(data_dir=tmp_path, auth_required=False, **settings))
    with TestClient(app) as c:
        # A fixed "today" so staleness does not depend on when the suite runs.
        c.app.state.runtime = dataclasses.replace(c.app.state.runtime, today=lambda: TODAY)  # type: ignore[attr-defined]
        yield c


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path)


def _record(
    *, lipids_when: str | None = FRESH, egfr: float = 75, uacr: float | None = None
) -> list[dict[str, Any]]:
    res = [
        patient(gender="male", birth="1971-03-01", race=["2106-3"]),
        bp("bp1", 148, 88, FRESH),
        smoking("s1", "8517006", FRESH),  # former smoker
        obs("bmi", "39156-5", 28.0, "kg/m2", FRESH),
        obs("egfr", "98979-8", egfr, "mL/min/{1.73_m2}", FRESH),
        # Eight months earlier: an eGFR under 60 then too makes the CKD chronic (KDIGO).
        obs("egfr0", "98979-8", egfr + 2, "mL/min/{1.73_m2}", "2025-09-01T09:00:00Z"),
        obs("ldl", "13457-7", 130, "mg/dL", FRESH),
    ]
    if lipids_when is not None:
        res += [
            obs("tc", "2093-3", 210, "mg/dL", lipids_when),
            obs("hdl", "2085-9", 45, "mg/dL", lipids_when),
        ]
    if uacr is not None:
        res.append(obs("acr", "9318-7", uacr, "mg/g", FRESH))
    return res


def _call(client: TestClient, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    prefetch: dict[str, Any] = {
        "patient": resources[0],
        "observations": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in resources[1:]],
        },
        "conditions": None,
        "medications": None,
    }
    response = client.post("/cds-services/cardio-renal-risk", json=hook_request("p1", prefetch))
    assert response.status_code == 200, response.text
    return response.json()["cards"]  # type: ignore[no-any-return]


def test_prevent_leads_with_the_risk_and_names_what_moved_it(client: TestClient) -> None:
    """A 55-year-old: PREVENT 10-year risk first; factors, the values used, the 30-year
    risk and one line of evidence in a short detail, units as clinicians write them."""
    (card,) = _call(client, _record())
    assert card["summary"].startswith("10-year cardiovascular risk ")
    assert "(PREVENT): ASCVD " in card["summary"]
    assert "Main factors: " in card["detail"]
    assert "systolic BP 148 mmHg" in card["detail"]
    assert "30-year cardiovascular risk" in card["detail"]  # age 55: it is published
    assert card["detail"].endswith("(Khan et al., Circulation 2024).")
    assert len(card["detail"]) <= 700


def test_without_race_prevent_still_answers(client: TestClient) -> None:
    """PREVENT is race-free: a record without race still gets its number."""
    record = _record()
    del record[0]["extension"]
    (card,) = _call(client, record)
    assert card["summary"].startswith("10-year cardiovascular risk ")


def test_missing_lipids_give_an_order_not_a_number(client: TestClient) -> None:
    """No lipid panel: no risk number, a create action with a valid draft ServiceRequest."""
    cards = _call(client, _record(lipids_when=None))
    (card,) = cards
    assert "%" not in card["summary"]
    assert "total cholesterol" in card["summary"]
    assert card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]  # one lipid panel for both TC and HDL
    assert action["type"] == "create"
    request = ServiceRequest.model_validate(action["resource"])
    assert request.code.coding[0].code == "57698-3"
    assert request.subject.reference == "Patient/p1"


def test_stale_lipids_give_an_order_not_a_number(client: TestClient) -> None:
    """Lipids older than five years are too old: the card orders a new panel instead."""
    (card,) = _call(client, _record(lipids_when="2019-01-01T09:00:00Z"))
    assert card["summary"] == (
        "Cardiovascular risk not computed: lipids from 2019 are too old (over 5 years); "
        "order a lipid panel"
    )
    assert "%" not in card["summary"]
    assert (
        card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"] == "57698-3"
    )


def test_ckd_gets_kfre_and_calibration_is_a_setting(tmp_path: Path) -> None:
    """Chronic eGFR 40 with ACR 300 mg/g: a KFRE card; the non-North-American
    calibration is lower."""
    risks = {}
    for calibration in ("north_america", "non_north_america"):
        for client in _client(tmp_path / calibration, kfre_calibration=calibration):
            cards = _call(client, _record(egfr=40, uacr=300))
            kfre = next(c for c in cards if "kidney failure risk" in c["summary"])
            assert kfre["summary"].startswith("CKD G3b A2: kidney failure risk ")  # ACR 300: A2
            assert "KDIGO 2024" in kfre["detail"]
            risks[calibration] = kfre["summary"]
    assert risks["north_america"] != risks["non_north_america"]


def test_ckd_without_acr_orders_it(client: TestClient) -> None:
    """Chronic eGFR 40 and no urine ACR: the kidney card orders a UACR instead of a number."""
    cards = _call(client, _record(egfr=40))
    kfre = next(c for c in cards if c["summary"].startswith("CKD G3b"))
    assert kfre["summary"].endswith(
        "order a urine albumin/creatinine ratio for the kidney failure risk"
    )
    assert "%" not in kfre["summary"]
    code = kfre["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"]
    assert code == "14959-1"


def test_albuminuria_with_normal_egfr_gets_no_kfre_card(client: TestClient) -> None:
    """ACR 45 with eGFR 75 is CKD, but outside the KFRE population: no kidney card."""
    cards = _call(client, _record(uacr=45))
    assert not any("kidney failure" in c["summary"] for c in cards)


def test_every_model_a_call_ran_is_in_its_audit_record(client: TestClient) -> None:
    """PREVENT is the primary model; PCE, PREVENT 30-year and KFRE are named with their sha256."""
    _call(client, _record(egfr=40, uacr=300))
    (record,) = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    assert record.body["model"]["id"] == "prevent"
    others = {m["id"]: m["sha256"] for m in record.body["otherModels"]}
    assert set(others) == {"prevent_30y", "pce", "kfre"}
    assert all(len(sha) == 64 for sha in others.values())
    assert "kfre.risk_5y_kidney_failure" in record.body["outputs"]


def test_the_fhir_export_has_a_device_for_every_model_used(client: TestClient) -> None:
    """Each model a call ran is exported as a Device, valid FHIR R4."""
    from fhir.resources.R4B.device import Device

    from cds_service.audit.fhir import export_resources

    _call(client, _record(egfr=40, uacr=300))
    records = client.app.state.runtime.audit.records()  # type: ignore[attr-defined]
    devices = [r for r in export_resources(records) if r["resourceType"] == "Device"]
    for device in devices:
        Device.model_validate(device)
    assert len(devices) == 4
