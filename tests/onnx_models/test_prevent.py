"""The PREVENT graphs against pyprevent, a published worked example and their input checks."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from onnx_models import LoadedModel, MissingInputsError, OutOfRangeError
from tests.onnx_models.artifacts import Artifacts
from tests.onnx_models.conftest import seeded

OUTPUTS_10Y = {
    "risk_10y_cvd": "calculate_10_yr_cvd_risk",
    "risk_10y_ascvd": "calculate_10_yr_ascvd_risk",
    "risk_10y_hf": "calculate_10_yr_heart_failure_risk",
}
OUTPUTS_30Y = {
    "risk_30y_cvd": "calculate_30_yr_cvd_risk",
    "risk_30y_ascvd": "calculate_30_yr_ascvd_risk",
    "risk_30y_hf": "calculate_30_yr_heart_failure_risk",
}


@pytest.fixture(scope="module")
def registry() -> Artifacts:
    return Artifacts()


def random_patient(rng: random.Random, female: bool, age_max: float) -> dict[str, float]:
    return {
        "age_years": rng.uniform(30, age_max),
        "female": float(female),
        "total_cholesterol_mg_dl": rng.uniform(130, 320),
        "hdl_cholesterol_mg_dl": rng.uniform(20, 100),
        "systolic_bp_mm_hg": rng.uniform(90, 180),
        "diabetes": float(rng.random() < 0.5),
        "current_smoker": float(rng.random() < 0.5),
        "bmi_kg_m2": rng.uniform(18.5, 39.9),
        "egfr_ml_min_1_73m2": rng.uniform(15, 140),
        "treated_hypertension": float(rng.random() < 0.5),
        "statin": float(rng.random() < 0.5),
    }


def corners(female: bool, age_max: float) -> list[dict[str, float]]:
    """Range ends and spline knots (SBP 110, BMI 30, eGFR 60), where pieces join."""
    rows = []
    for age in (30.0, 55.0, age_max):
        for sbp in (90.0, 110.0, 180.0):
            for bmi in (18.5, 30.0, 39.9):
                for egfr in (15.0, 60.0, 140.0):
                    for flags in ((0.0, 0.0), (1.0, 1.0)):
                        rows.append({
                            "age_years": age, "female": float(female),
                            "total_cholesterol_mg_dl": 320.0 if flags[0] else 130.0,
                            "hdl_cholesterol_mg_dl": 20.0 if flags[0] else 100.0,
                            "systolic_bp_mm_hg": sbp, "diabetes": flags[0],
                            "current_smoker": flags[1], "bmi_kg_m2": bmi,
                            "egfr_ml_min_1_73m2": egfr, "treated_hypertension": flags[1],
                            "statin": flags[0],
                        })  # fmt: skip
    return rows


def pyprevent_risk(pyprevent: object, function: str, p: dict[str, float]) -> float:
    # pyprevent takes sex as "female"/"male", booleans for flags and returns a percentage;
    # it always wants bmi and statin, whichever outcome is asked for.
    value: float = getattr(pyprevent, function)(
        sex="female" if p["female"] else "male",
        age=p["age_years"],
        total_cholesterol=p["total_cholesterol_mg_dl"],
        hdl_cholesterol=p["hdl_cholesterol_mg_dl"],
        systolic_bp=p["systolic_bp_mm_hg"],
        has_diabetes=bool(p["diabetes"]),
        current_smoker=bool(p["current_smoker"]),
        bmi=p["bmi_kg_m2"],
        egfr=p["egfr_ml_min_1_73m2"],
        on_htn_meds=bool(p["treated_hypertension"]),
        on_cholesterol_meds=bool(p["statin"]),
    )
    return value / 100.0


@pytest.mark.parametrize(
    ("model_id", "outputs", "age_max"),
    [("prevent", OUTPUTS_10Y, 79.0), ("prevent_30y", OUTPUTS_30Y, 59.0)],
)
@pytest.mark.parametrize("female", [True, False])
def test_matches_pyprevent(
    registry: Artifacts, model_id: str, outputs: dict[str, str], age_max: float, female: bool
) -> None:
    """2,000 random in-range patients per sex plus the range corners: every output <= 1e-6."""
    pyprevent = pytest.importorskip("pyprevent")
    model = registry.get(model_id)
    rng = seeded(f"{model_id}-{female}")
    patients = [random_patient(rng, female, age_max) for _ in range(2000)]
    patients += corners(female, age_max)
    x = np.array([[p[n] for n in model.card.input_names] for p in patients])
    got = model.predict_batch(x)
    for output, function in outputs.items():
        want = np.array([pyprevent_risk(pyprevent, function, p) for p in patients])
        assert np.max(np.abs(got[output] - want)) <= 1e-6, output
    # The checked single-patient path gives the same numbers.
    for p in patients[:25]:
        predicted = model.predict(p).outputs
        for output, function in outputs.items():
            assert abs(predicted[output] - pyprevent_risk(pyprevent, function, p)) <= 1e-6


# preventr README (martingmayer/preventr): 50-year-old woman, SBP 160 treated, TC 200,
# HDL 45, no statin, diabetes, non-smoker, eGFR 90, BMI 35. Published to 3 decimals.
README_EXAMPLE = {
    "age_years": 50.0, "female": 1.0, "total_cholesterol_mg_dl": 200.0,
    "hdl_cholesterol_mg_dl": 45.0, "systolic_bp_mm_hg": 160.0, "diabetes": 1.0,
    "current_smoker": 0.0, "bmi_kg_m2": 35.0, "egfr_ml_min_1_73m2": 90.0,
    "treated_hypertension": 1.0, "statin": 0.0,
}  # fmt: skip
README_RISKS = {
    "risk_10y_cvd": 0.147, "risk_10y_ascvd": 0.092, "risk_10y_hf": 0.081,
    "risk_30y_cvd": 0.530, "risk_30y_ascvd": 0.354, "risk_30y_hf": 0.390,
}  # fmt: skip


@pytest.mark.parametrize("model_id", ["prevent", "prevent_30y"])
def test_preventr_readme_example(registry: Artifacts, model_id: str) -> None:
    """The preventr README example rounds to the published three decimals."""
    outputs = registry.get(model_id).predict(README_EXAMPLE).outputs
    for name, value in outputs.items():
        assert round(value, 3) == README_RISKS[name], name


def test_baseline_is_the_equations_centring_profile(registry: Artifacts) -> None:
    """At the centring profile every term is 0, so each risk is sigmoid(intercept)."""
    intercepts = {  # Khan 2024 Table S12A-C constants, women
        "risk_10y_cvd": -3.307728, "risk_10y_ascvd": -3.819975, "risk_10y_hf": -4.310409,
    }  # fmt: skip
    e = registry.get("prevent").explain(README_EXAMPLE)
    for name, constant in intercepts.items():
        assert e.baseline_outputs[name] == pytest.approx(1 / (1 + math.exp(-constant)), abs=1e-12)


def test_bmi_moves_heart_failure_only(registry: Artifacts) -> None:
    """BMI enters the HF equations alone: its Shapley value on CVD and ASCVD is exactly 0."""
    e = registry.get("prevent").explain(README_EXAMPLE)
    phi = {o: {c.feature: c.contribution for c in cs} for o, cs in e.contributions.items()}
    assert phi["risk_10y_cvd"]["bmi_kg_m2"] == 0.0
    assert phi["risk_10y_ascvd"]["bmi_kg_m2"] == 0.0
    assert phi["risk_10y_hf"]["bmi_kg_m2"] > 0.0
    assert phi["risk_10y_hf"]["statin"] == 0.0


@pytest.mark.parametrize(
    ("model_id", "changes", "message"),
    [
        ("prevent", {"age_years": 29.0}, "age_years = 29 years is outside 30\u201379 for prevent"),
        ("prevent", {"age_years": 80.0}, "age_years = 80 years is outside 30\u201379 for prevent"),
        (
            "prevent_30y",
            {"age_years": 60.0},
            "age_years = 60 years is outside 30\u201359 for prevent_30y",
        ),
        (
            "prevent",
            {"systolic_bp_mm_hg": 181.0},
            "systolic_bp_mm_hg = 181 mm[Hg] is outside 90\u2013180 for prevent",
        ),
        (
            "prevent",
            {"egfr_ml_min_1_73m2": 14.0},
            "egfr_ml_min_1_73m2 = 14 mL/min/{1.73_m2} is outside 15\u2013140 for prevent",
        ),
        (
            "prevent",
            {"bmi_kg_m2": 40.0},
            "bmi_kg_m2 = 40 kg/m2 is outside 18.5\u201339.9 for prevent",
        ),
        ("prevent", {"statin": 0.5}, "statin = 0.5 is not 0 or 1 for prevent"),
    ],
)
def test_out_of_range_gives_a_message(
    registry: Artifacts, model_id: str, changes: dict[str, float], message: str
) -> None:
    """Out-of-range inputs are refused with the input, value, unit and range named."""
    with pytest.raises(OutOfRangeError) as info:
        registry.get(model_id).predict(README_EXAMPLE | changes)
    assert str(info.value) == message


def test_missing_bmi_is_named(registry: Artifacts) -> None:
    """A patient without BMI gets a message, not a number (the HF equations need it)."""
    values: dict[str, float | None] = dict(README_EXAMPLE) | {"bmi_kg_m2": None}
    with pytest.raises(MissingInputsError, match=r"^prevent needs bmi_kg_m2; not available$"):
        registry.get("prevent").predict(values)


def test_30y_model_refuses_over_59_where_10y_serves(registry: Artifacts) -> None:
    """A 65-year-old gets 10-year PREVENT but no unpublished 30-year number."""
    older = README_EXAMPLE | {"age_years": 65.0}
    assert 0 < registry.get("prevent").predict(older).outputs["risk_10y_cvd"] < 1
    with pytest.raises(OutOfRangeError):
        registry.get("prevent_30y").predict(older)


def test_model_loaded(registry: Artifacts) -> None:
    """Both PREVENT artifacts carry eleven inputs in the twin's feature names."""
    for model_id in ("prevent", "prevent_30y"):
        model: LoadedModel = registry.get(model_id)
        assert model.card.input_names == (
            "age_years", "female", "total_cholesterol_mg_dl", "hdl_cholesterol_mg_dl",
            "systolic_bp_mm_hg", "diabetes", "current_smoker", "bmi_kg_m2",
            "egfr_ml_min_1_73m2", "treated_hypertension", "statin",
        )  # fmt: skip
        assert model.card.held_fixed == ("female",)
