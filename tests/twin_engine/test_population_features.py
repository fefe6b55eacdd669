"""Features that decide whether a model applies: clinical ASCVD history and statin use."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support.fhir import bundle, condition, med_request, patient
from twin_engine import build_twin_from_fhir, derive_features

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.mark.parametrize(
    ("system", "code", "status", "onset", "as_of", "expected"),
    [
        (SNOMED, "22298006", "active", "2020-01-01", date(2024, 1, 1), 1.0),  # MI
        (SNOMED, "22298006", "resolved", "2020-01-01", date(2024, 1, 1), 1.0),  # history counts
        (ICD10, "I21.4", "active", "2020-01-01", date(2024, 1, 1), 1.0),  # NSTEMI
        (SNOMED, "22298006", "active", "2025-01-01", date(2024, 1, 1), 0.0),  # not yet
        (SNOMED, "38341003", "active", "2020-01-01", date(2024, 1, 1), 0.0),  # hypertension
    ],
)
def test_clinical_ascvd_history(
    system: str, code: str, status: str, onset: str, as_of: date, expected: float
) -> None:
    """Any ASCVD condition with onset by the date counts, resolved or not."""
    twin = build_twin_from_fhir(
        bundle(patient(), condition("c1", system, code, onset=onset, status=status))
    )
    feature = derive_features(twin, as_of).get("clinical_ascvd")
    assert feature.value == expected
    assert feature.sources == (("Condition/c1",) if expected else ())


@pytest.mark.parametrize(
    ("code", "display", "status", "expected"),
    [
        ("83367", "atorvastatin", "active", 1.0),
        ("83367", "atorvastatin", "stopped", 0.0),
        ("29046", "lisinopril", "active", 0.0),
        (None, "Rosuvastatin 10 MG Oral Tablet", "active", 1.0),  # text fallback
    ],
)
def test_statin_use(code: str | None, display: str, status: str, expected: float) -> None:
    """An active statin request counts; a stopped one and other classes do not."""
    twin = build_twin_from_fhir(bundle(patient(), med_request("m1", code, display, status=status)))
    assert derive_features(twin, date(2024, 1, 1)).get("statin").value == expected
