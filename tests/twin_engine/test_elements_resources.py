"""Patient, Condition, Procedure and medication-use fast paths accept only what
fhir.resources accepts, with the same values (the property that makes skipping pydantic
on well-formed resources safe)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import synthea_bundles
from tests.support.fhir import SNOMED, condition, med_request, patient
from twin_engine.fhir import validate as slow
from twin_engine.fhir.elements import (
    wellformed_condition,
    wellformed_medication_use,
    wellformed_patient,
    wellformed_procedure,
)
from twin_engine.fhir.medications import MEDICATION_USE_FIELDS
from twin_engine.fhir.records import CONDITION_FIELDS, PATIENT_FIELDS, PROCEDURE_FIELDS

Fast = Callable[[dict[str, Any]], object]
Slow = Callable[[Any], object]
_USE = (MEDICATION_USE_FIELDS, wellformed_medication_use, slow.medication_use_fields)
_READERS: dict[str, tuple[frozenset[str], Fast, Slow]] = {
    "Patient": (PATIENT_FIELDS, wellformed_patient, slow.patient_fields),
    "Condition": (CONDITION_FIELDS, wellformed_condition, slow.condition_fields),
    "Procedure": (PROCEDURE_FIELDS, wellformed_procedure, slow.procedure_fields),
    "MedicationRequest": _USE,
    "MedicationStatement": _USE,
    "MedicationAdministration": _USE,
}


def _agrees(raw: dict[str, Any]) -> bool:
    """False when the fast path declines; else asserts R4B accepts it with equal fields."""
    keep, fast, to_fields = _READERS[raw["resourceType"]]
    projection = {k: v for k, v in raw.items() if k in keep}
    found = fast(projection)
    if found is None:
        return False
    model = slow.MODELS[raw["resourceType"]].model_validate(projection)
    assert found == to_fields(model), raw
    return True


def _procedure() -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "pci",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "415070008"}]},
        "subject": {"reference": "Patient/p1"},
        "performedPeriod": {"start": "2022-04-01T10:00:00+02:00", "end": "2022-04-01"},
    }


def _administration() -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": "ma",
        "status": "completed",
        "medicationCodeableConcept": {"text": "vancomycin"},
        "subject": {"reference": "Patient/p1", "display": "Jo"},
        "effectivePeriod": {"start": "2024-01-01T08:00:00Z", "end": "2024-01-01T09:00:00Z"},
    }


def _valid() -> list[dict[str, Any]]:
    statement = med_request("s", "617310", "atorvastatin") | {
        "resourceType": "MedicationStatement",
        "effectiveDateTime": "2023-02",
        "dateAsserted": "2023-02-03",
    }
    del statement["intent"], statement["authoredOn"]
    return [
        patient() | {"deceasedDateTime": "2024-01-02T03:04:05+02:00"},
        patient(birth="1970"),
        condition("dm", SNOMED, "44054006", abatement="2021-05-06T07:08:09Z")
        | {"recordedDate": "2020-01-02"},
        _procedure(),
        med_request("m", "617310", "atorvastatin 20 MG Oral Tablet"),
        statement,
        _administration(),
    ]


@pytest.mark.parametrize("raw", _valid(), ids=lambda r: r["resourceType"])
def test_the_common_shapes_take_the_fast_path_with_r4b_values(raw: dict[str, Any]) -> None:
    """Each hand-written valid resource is read without pydantic, as R4B reads it."""
    assert _agrees(raw)


def test_generated_patients_take_the_fast_path_with_r4b_values(
    demo_bundles: list[dict[str, Any]],
) -> None:
    """Every generated resource of these types is accepted by the fast path, R4B alike."""
    found = [
        e["resource"]
        for b in demo_bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] in _READERS
    ]
    assert found
    assert all(_agrees(r) for r in found)


@pytest.mark.corpus
def test_synthea_resources_agree_with_r4b() -> None:
    """On the shared Synthea corpus, whatever the fast path accepts R4B accepts alike."""
    paths = synthea_bundles()
    if not paths:
        pytest.skip("shared corpus absent")
    found = [
        e["resource"]
        for p in paths[:5]
        for e in json.loads(p.read_text())["entry"]
        if e["resource"]["resourceType"] in _READERS
    ]
    accepted = sum(_agrees(r) for r in found)
    assert accepted > 0.9 * len(found)


_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=6),
    st.sampled_from(
        [
            "",
            "male",
            "F",
            "completed",
            "order",
            "2024",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00Z",
            "2024-02-30",
            [],
            {},
            {"start": "2024-05-01"},
            {"reference": "Patient/p1"},
            {"reference": ""},
            {"text": "x"},
            {"coding": [{"code": "x"}]},
        ]
    ),
)
_KEYS = st.sampled_from(
    [
        "id",
        "status",
        "intent",
        "gender",
        "birthDate",
        "deceasedBoolean",
        "deceasedDateTime",
        "subject",
        "code",
        "clinicalStatus",
        "onsetDateTime",
        "onsetPeriod",
        "abatementPeriod",
        "recordedDate",
        "performedDateTime",
        "performedPeriod",
        "medicationCodeableConcept",
        "medicationReference",
        "authoredOn",
        "effectiveDateTime",
        "effectivePeriod",
        "dateAsserted",
    ]
)


def _mutated(base: dict[str, Any], changes: list[tuple[str, Any]]) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    for key, value in changes:
        if value is None and key in raw:
            del raw[key]
        else:
            raw[key] = copy.deepcopy(value)
    return raw


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.builds(_mutated, st.sampled_from(_valid()), st.lists(st.tuples(_KEYS, _ODD), max_size=2)))
def test_whatever_the_fast_path_accepts_r4b_accepts_with_the_same_values(
    raw: dict[str, Any],
) -> None:
    """Property: accepted by the fast path implies valid R4B with identical fields."""
    event("fast path" if _agrees(raw) else "full check")
