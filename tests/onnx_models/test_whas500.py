"""The WHAS500 Cox model: parity with the fitted scikit-survival model, card honesty, inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onnx_models import OutOfRangeError
from onnx_models.build import whas500_fit
from tests.onnx_models.artifacts import Artifacts

PARITY = Path(__file__).parent / "data" / "whas500_parity.json"


@pytest.fixture(scope="module")
def models() -> Artifacts:
    return Artifacts()


def test_parity_with_recorded_sksurv_predictions(models: Artifacts) -> None:
    """60 cohort patients: the graph equals sksurv's 1 - S(365 | x) recorded at training."""
    model = models.get("whas500_mortality")
    recorded = json.loads(PARITY.read_text())
    assert recorded["features"] == list(model.card.input_names)
    x = np.array([row["x"] for row in recorded["rows"]])
    want = np.array([row["risk_1y_mortality"] for row in recorded["rows"]])
    got = model.predict_batch(x)["risk_1y_mortality"]
    assert np.max(np.abs(got - want)) <= 1e-6


def test_parity_with_a_fresh_fit_on_all_500_patients(models: Artifacts) -> None:
    """Refitting with scikit-survival reproduces the coefficients and every patient's risk."""
    sksurv_datasets = pytest.importorskip("sksurv.datasets")
    linear_model = pytest.importorskip("sksurv.linear_model")
    frame, y = sksurv_datasets.load_whas500()
    from training.train_whas500 import FEATURES

    x = np.column_stack([frame[c].astype(np.float64).to_numpy() for c in FEATURES.values()])
    fitted = linear_model.CoxPHSurvivalAnalysis(alpha=0.0, ties="breslow").fit(x, y)
    assert np.allclose(fitted.coef_, whas500_fit.COEFFICIENTS, rtol=0, atol=1e-9)
    want = np.array([1.0 - fn(365.0) for fn in fitted.predict_survival_function(x)])
    got = models.get("whas500_mortality").predict_batch(x)["risk_1y_mortality"]
    assert np.max(np.abs(got - want)) <= 1e-6


def test_card_is_honest_about_data_and_validation(models: Artifacts) -> None:
    """The card names the cohort, the era, the research-only use and the CV figures."""
    card = models.get("whas500_mortality").card
    assert "NOT for clinical decisions" in card.intended_use
    assert "Worcester" in card.population and "1997-2001" in card.population
    assert f"Harrell's C {whas500_fit.HARRELL_C[0]:.3f}" in card.validation
    assert f"AUC at 365 days {whas500_fit.UNO_AUC_365D[0]:.3f}" in card.validation
    assert "No external validation" in card.validation
    assert 0.6 < whas500_fit.HARRELL_C[0] < 0.9  # plausible, not an overfit 0.99


def test_inputs_map_to_fhir(models: Artifacts) -> None:
    """Vitals carry their LOINC codes; conditions name SNOMED and ICD-10-CM codes."""
    specs = {s.name: s for s in models.get("whas500_mortality").card.inputs}
    assert specs["heart_rate_per_min"].loinc == "8867-4"
    assert specs["systolic_bp_mm_hg"].loinc == "8480-6"
    assert specs["diastolic_bp_mm_hg"].loinc == "8462-4"
    assert specs["bmi_kg_m2"].loinc == "39156-5"
    assert "I50" in specs["heart_failure"].fhir_source
    assert "I48" in specs["atrial_fibrillation"].fhir_source
    assert specs["cardiogenic_shock"].kind == "binary"


def test_outside_the_cohort_ranges_is_refused(models: Artifacts) -> None:
    """A heart rate never seen in the cohort gets a message, not an extrapolated number."""
    model = models.get("whas500_mortality")
    values = dict(model.card.baseline.values) | {"female": 0.0, "heart_rate_per_min": 220.0}
    with pytest.raises(OutOfRangeError, match=r"heart_rate_per_min = 220 /min is outside 35"):
        model.predict(values)


def test_risk_rises_with_shock_and_age(models: Artifacts) -> None:
    """Cardiogenic shock and age raise the 1-year risk, as in the cohort."""
    model = models.get("whas500_mortality")
    base = dict(model.card.baseline.values) | {"female": 0.0}
    risk = model.predict(base).outputs["risk_1y_mortality"]
    assert model.predict(base | {"cardiogenic_shock": 1.0}).outputs["risk_1y_mortality"] > risk
    assert model.predict(base | {"age_years": 90.0}).outputs["risk_1y_mortality"] > risk
