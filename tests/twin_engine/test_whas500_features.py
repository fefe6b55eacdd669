"""The twin derives every WHAS500 input from FHIR: vitals, HF, AF, shock, CVD history, prior MI."""

from __future__ import annotations

from datetime import date

import pytest

from onnx_models.registry import ModelRegistry
from tests.support.fhir import ICD10, SNOMED, bp, condition, obs, patient
from twin_engine import build_twin_from_fhir, derive_features

AS_OF = date(2024, 3, 10)


def _features(*conditions: dict[str, object]) -> object:
    resources = [
        patient(gender="male", birth="1950-01-01"),
        bp("bp", 130, 80, "2024-03-09T09:00:00Z"),
        obs("hr", "8867-4", 92, "/min", "2024-03-09T09:00:00Z"),
        obs("bmi", "39156-5", 27.0, "kg/m2", "2024-03-09T09:00:00Z"),
        *conditions,
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    return derive_features(build_twin_from_fhir(bundle), AS_OF)


@pytest.mark.parametrize(
    ("condition_", "feature", "value"),
    [
        (condition("c", SNOMED, "84114007", onset="2024-03-09"), "heart_failure", 1.0),
        (condition("c", ICD10, "I48.0", onset="2024-03-09"), "atrial_fibrillation", 1.0),
        (condition("c", ICD10, "R57.0", onset="2024-03-09"), "cardiogenic_shock", 1.0),
        (condition("c", SNOMED, "89138009", status="resolved"), "cardiogenic_shock", 0.0),
        (
            condition("c", SNOMED, "22298006", onset="2020-01-01"),
            "prior_myocardial_infarction",
            1.0,
        ),
        # Within 28 days it is the index MI, not a prior one (Universal Definition of MI).
        (
            condition("c", SNOMED, "22298006", onset="2024-03-01"),
            "prior_myocardial_infarction",
            0.0,
        ),
        (
            condition("c", SNOMED, "53741008", onset="2019-01-01"),
            "cardiovascular_disease_history",
            1.0,
        ),
    ],
)
def test_condition_features(condition_: dict[str, object], feature: str, value: float) -> None:
    """Each condition-based WHAS500 input follows its concept and date rule."""
    assert _features(condition_).get(feature).value == value  # type: ignore[attr-defined]


def test_whas500_predicts_from_a_fhir_patient() -> None:
    """Every WHAS500 input is derived, so the model runs on a FHIR bundle alone."""
    features = _features(condition("hf", SNOMED, "84114007", onset="2024-03-09"))
    model = ModelRegistry.load().get("whas500_mortality")
    values = {n: features.get(n).value for n in model.card.input_names}  # type: ignore[attr-defined]
    assert None not in values.values()
    risk = model.predict(values).outputs["risk_1y_mortality"]
    assert 0.0 < risk < 1.0
