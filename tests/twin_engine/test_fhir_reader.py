"""The one FHIR reader (twin_engine.fhir): each rule once, on FHIR snippets.

Statuses against their R4 value sets, the elements the twin reads checked by the
reader itself (fhir.resources only for what its grammar cannot vouch for), and the one
unit rule shared by the twin and the dose history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.fhir import SNOMED, bundle, condition, med_request, obs, patient
from twin_engine import build_twin, ingest
from twin_engine.fhir.memo import clear_parse_memo
from twin_engine.fhir.records import ConditionRecord, ObservationRecord, PatientRecord
from twin_engine.pk.history import extract_history

PCI = "415070008"  # SNOMED CT percutaneous coronary intervention
T0 = datetime(2024, 1, 2, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_memo() -> None:
    clear_parse_memo()


def _procedure(**changes: Any) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "pci",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": PCI}]},
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2022-04-01",
    } | changes


def _reasons(*resources: dict[str, Any]) -> list[str]:
    return [i.reason for i in ingest(bundle(patient(), *resources)).issues]


# -- Observation status (R4 ObservationStatus, required binding) ----------------------------


@pytest.mark.parametrize("status", ["done", "Final", ""])
def test_an_observation_status_outside_r4_is_refused_with_the_value_set(status: str) -> None:
    """fhir.resources accepted any status; the reader refuses one R4 does not define."""
    bad = obs("o", "2093-3", 200, "mg/dL") | {"status": status}
    assert _reasons(bad) == [
        f"Observation/o has status {status!r}, which is not in the R4 value set (amended, "
        "cancelled, corrected, entered-in-error, final, preliminary, registered, unknown); "
        "skipped"
    ]


def test_an_invalid_status_is_refused_on_the_full_check_path_too() -> None:
    """A resource the narrow grammar sends to fhir.resources is refused for its status first."""
    bad = obs("o", "2093-3", 200, "mg/dL") | {"status": "done", "_status": {"id": "x"}}
    (reason,) = _reasons(bad)
    assert "has status 'done', which is not in the R4 value set" in reason


@pytest.mark.parametrize(
    ("status", "used"),
    [
        ("final", True),
        ("amended", True),
        ("corrected", True),
        ("preliminary", True),
        ("registered", False),
        ("unknown", False),
        ("cancelled", False),
        ("entered-in-error", False),
    ],
)
def test_only_resulted_observation_statuses_give_values(status: str, used: bool) -> None:
    """final, amended, corrected and preliminary values are used; the others are named."""
    result = ingest(bundle(patient(), obs("o", "2093-3", 200, "mg/dL") | {"status": status}))
    observations = [r for r in result.resources if isinstance(r, ObservationRecord)]
    assert bool(observations) is used
    reasons = [i.reason for i in result.issues]
    assert reasons == ([] if used else [f"Observation/o has status {status}; skipped"])


# -- the other resource types: the reader's own checks -------------------------------------


def test_well_formed_resources_never_reach_fhir_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Patient, Observation, Condition, Procedure and MedicationRequest in the common shape
    are read without pydantic validation (the cold-path cost of issue 15)."""

    def refuse(*_: object) -> None:
        raise AssertionError("fhir.resources validation on a well-formed resource")

    monkeypatch.setattr("twin_engine.fhir.records.validate", refuse)
    monkeypatch.setattr("twin_engine.fhir.medications.validate", refuse)
    result = ingest(
        bundle(
            patient(),
            obs("o", "2093-3", 200, "mg/dL"),
            condition("dm", SNOMED, "44054006"),
            _procedure(),
            med_request("m", "617310", "atorvastatin 20 MG Oral Tablet"),
        )
    )
    assert result.issues == ()
    assert [type(r).__name__ for r in result.resources] == [
        "PatientRecord",
        "ObservationRecord",
        "ConditionRecord",
        "ProcedureRecord",
        "MedicationRecord",
    ]


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        pytest.param(
            patient() | {"gender": "F"},
            "Patient/p1 has gender 'F', which is not in the R4 value set",
            id="patient-gender",
        ),
        pytest.param(
            patient() | {"birthDate": "1970-02-30"},
            "Patient/p1 is not valid FHIR R4: birthDate: ",
            id="patient-birthdate",
        ),
        pytest.param(
            condition("dm", SNOMED, "44054006", onset="last spring"),
            "Condition/dm is not valid FHIR R4: onsetDateTime: ",
            id="condition-onset",
        ),
        pytest.param(
            _procedure(status="done"),
            "Procedure/pci has status 'done', which is not in the R4 value set",
            id="procedure-status",
        ),
        pytest.param(
            _procedure(performedDateTime="2022-13-01"),
            "Procedure/pci is not valid FHIR R4: performedDateTime: ",
            id="procedure-time",
        ),
        pytest.param(
            med_request("m", "617310", "atorvastatin") | {"status": "ordered"},
            "MedicationRequest/m has status 'ordered', which is not in the R4 value set",
            id="request-status",
        ),
        pytest.param(
            med_request("m", "617310", "atorvastatin") | {"intent": "maybe"},
            "MedicationRequest/m has intent 'maybe', which is not in the R4 value set",
            id="request-intent",
        ),
    ],
)
def test_an_invalid_element_the_twin_reads_is_refused_with_its_reason(
    resource: dict[str, Any], reason: str
) -> None:
    """The element is named, and the resource is skipped, never read half-valid."""
    if resource["resourceType"] == "Patient":
        issues = ingest(bundle(resource, patient("p2")), patient_id="p2").issues
    else:
        issues = ingest(bundle(patient(), resource)).issues
    assert len(issues) == 1
    assert issues[0].reason.startswith(reason), issues[0].reason
    assert issues[0].reason.endswith("; skipped")


def test_an_unusual_but_valid_element_is_read_through_the_full_check() -> None:
    """An extension on a primitive is outside the narrow grammar, valid R4, and read."""
    dm = condition("dm", SNOMED, "44054006", onset="2020-01-01")
    dm["_onsetDateTime"] = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    result = ingest(bundle(patient(), dm))
    (record,) = [r for r in result.resources if isinstance(r, ConditionRecord)]
    assert result.issues == ()
    assert record.onset == datetime(2020, 1, 1, tzinfo=UTC)


def test_patient_fields_read_by_the_reader() -> None:
    """Gender, birth date and deceased time come out as the twin needs them."""
    who = patient(birth="1970-06") | {"deceasedDateTime": "2024-01-02T03:04:05+02:00"}
    record = ingest(bundle(who)).patient
    assert record == PatientRecord(
        id="p1",
        birth_date=datetime(1970, 6, 1).date(),
        gender="female",
        race_omb=(),
        race_recorded=False,
        ethnicity_omb=(),
        deceased=True,
        deceased_time=datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC),
    )


# -- one unit rule for every reader (twin_engine.units) -------------------------------------


def _weight(code: str | None, unit: str | None) -> dict[str, Any]:
    raw = obs("w", "29463-7", 154.0, None, (T0 - timedelta(hours=1)).isoformat())
    raw["valueQuantity"] = (
        {"value": 154.0} | ({"code": code} if code else {}) | ({"unit": unit} if unit else {})
    )
    return raw


def _twin_weight(raw: dict[str, Any]) -> tuple[float | None, str]:
    (point,) = build_twin(ingest(bundle(patient(), raw))).observations["weight"]
    return point.value, point.quality


@pytest.mark.parametrize(
    ("code", "unit", "kg"),
    [
        ("[lb_av]", "lb", 69.853225),  # the UCUM code
        (None, "lbs", 69.853225),  # a printed spelling, no code: mapped explicitly
        ("lbs", "lbs", None),  # a printed spelling used as a code: not UCUM, refused
        ("[LB_AV]", None, None),  # UCUM codes are case-sensitive
        (None, "pounds", None),  # not listed: never guessed
    ],
)
def test_the_twin_and_the_dose_history_read_a_weight_unit_alike(
    code: str | None, unit: str | None, kg: float | None
) -> None:
    """The same Quantity gives the same kilograms, or the same refusal, in both readers."""
    raw = _weight(code, unit)
    value, quality = _twin_weight(raw)
    history = extract_history([patient(), raw], as_of=T0)
    if kg is None:
        assert quality == "unit_unknown"
        assert history.weight is None
        assert any("Observation/w gives body weight" in n for n in history.notes)
    else:
        assert value == pytest.approx(kg)
        assert history.weight is not None and history.weight.value == pytest.approx(kg)


def test_a_non_ucum_code_is_refused_with_its_ucum_spelling_named() -> None:
    """The reason says what UCUM writes, so the sender can fix the feed."""
    history = extract_history([patient(), _weight("lbs", None)], as_of=T0)
    assert any(
        "code 'lbs' is not a UCUM code (UCUM writes it '[lb_av]')" in n for n in history.notes
    )


@pytest.mark.parametrize(("code", "mg_dl"), [("umol/L", 1.0), ("umol/l", 1.0), ("mg/dl", 88.4)])
def test_creatinine_units_agree_between_the_twin_and_the_dose_history(
    code: str, mg_dl: float
) -> None:
    """UCUM writes the litre L or l; both readers convert umol/L by 88.4 (KDIGO 2012)."""
    raw = obs("cr", "2160-0", 88.4, code, (T0 - timedelta(hours=1)).isoformat())
    (point,) = build_twin(ingest(bundle(patient(), raw))).observations["creatinine"]
    history = extract_history([patient(), raw], as_of=T0)
    assert point.value == pytest.approx(mg_dl)
    assert history.creatinine is not None
    assert history.creatinine.value == pytest.approx(mg_dl)
