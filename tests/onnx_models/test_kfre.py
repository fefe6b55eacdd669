"""The KFRE graphs against the kfre package, the published formula, and their input checks."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from onnx_models import MissingInputsError, OutOfRangeError
from tests.onnx_models.artifacts import Artifacts
from tests.onnx_models.conftest import seeded

# --- The 4-variable KFRE written out from Tangri 2011 / 2016, without onnx_models.build.kfre. ---
# (model id, 2-year S0, 5-year S0): Tangri 2011 original (North America) and Tangri 2016
# recalibration for non-North American cohorts (higher S0: the original overestimated risk).
CALIBRATIONS = [("kfre", 0.9750, 0.9240), ("kfre_non_na", 0.9832, 0.9365)]


def reference_risk(p: dict[str, float], s0: float) -> float:
    male = 1.0 - p["female"]
    score = (
        -0.2201 * (p["age_years"] / 10 - 7.036)
        + 0.2467 * (male - 0.5642)
        - 0.5567 * (p["egfr_ml_min_1_73m2"] / 5 - 7.222)
        + 0.4510 * (math.log(p["uacr_mg_g"]) - 5.137)
    )
    return 1.0 - s0 ** math.exp(score)


def random_patient(rng: random.Random) -> dict[str, float]:
    return {
        "age_years": rng.uniform(18, 100),
        "female": float(rng.random() < 0.5),
        "egfr_ml_min_1_73m2": rng.uniform(10, 59.99),
        # ACR spans five decades: draw its logarithm.
        "uacr_mg_g": math.exp(rng.uniform(math.log(0.1), math.log(25000))),
    }


@pytest.fixture(scope="module")
def models() -> Artifacts:
    return Artifacts()


def patients(seed: str) -> list[dict[str, float]]:
    rng = seeded(seed)
    rows = [random_patient(rng) for _ in range(2000)]
    rows += [
        {"age_years": a, "female": f, "egfr_ml_min_1_73m2": g, "uacr_mg_g": u}
        for a in (18.0, 100.0) for f in (0.0, 1.0) for g in (10.0, 59.99) for u in (0.1, 25000.0)
    ]  # fmt: skip
    return rows


@pytest.mark.parametrize(("model_id", "s0_2y", "s0_5y"), CALIBRATIONS)
def test_matches_published_formula(
    models: Artifacts, model_id: str, s0_2y: float, s0_5y: float
) -> None:
    """2,000+ random in-range patients: both outputs within 1e-6 of the formula."""
    model = models.get(model_id)
    rows = patients(model_id)
    x = np.array([[p[n] for n in model.card.input_names] for p in rows])
    got = model.predict_batch(x)
    for output, s0 in (("risk_2y_kidney_failure", s0_2y), ("risk_5y_kidney_failure", s0_5y)):
        want = np.array([reference_risk(p, s0) for p in rows])
        assert np.max(np.abs(got[output] - want)) <= 1e-6, output


@pytest.mark.parametrize(("model_id", "north_american"), [("kfre", True), ("kfre_non_na", False)])
def test_matches_kfre_package(models: Artifacts, model_id: str, north_american: bool) -> None:
    """The PyPI kfre package (sex 1 = male, ACR in mg/g) agrees within 1e-6."""
    kfre = pytest.importorskip("kfre")
    model = models.get(model_id)
    rows = patients(f"{model_id}-pkg")
    x = np.array([[p[n] for n in model.card.input_names] for p in rows])
    got = model.predict_batch(x)
    for years in (2, 5):
        want = kfre.risk_pred(
            age=x[:, 0],
            sex=1.0 - x[:, 1],
            eGFR=x[:, 2],
            uACR=x[:, 3],
            is_north_american=north_american,
            years=years,
            num_vars=4,
        )
        assert np.max(np.abs(got[f"risk_{years}y_kidney_failure"] - want)) <= 1e-6


def test_worked_example_at_the_centring_means(models: Artifacts) -> None:
    """At the published means the linear predictor is 0, so risk is 1 - S0 exactly.

    A man with age 70.36, eGFR 36.11 and ln ACR 5.137 differs from the means only in sex:
    risk = 1 - S0 ** exp(0.2467 * (1 - 0.5642)).
    """
    man = {"age_years": 70.36, "female": 0.0, "egfr_ml_min_1_73m2": 36.11,
           "uacr_mg_g": math.exp(5.137)}  # fmt: skip
    hr = math.exp(0.2467 * (1 - 0.5642))
    for model_id, s0_2y, s0_5y in CALIBRATIONS:
        out = models.get(model_id).predict(man).outputs
        assert out["risk_2y_kidney_failure"] == pytest.approx(1 - s0_2y**hr, abs=1e-12)
        assert out["risk_5y_kidney_failure"] == pytest.approx(1 - s0_5y**hr, abs=1e-12)


def test_directions_and_calibration(models: Artifacts) -> None:
    """Lower eGFR, more albuminuria and male sex raise risk; 5 y > 2 y; non-NA below NA."""
    p = {"age_years": 60.0, "female": 1.0, "egfr_ml_min_1_73m2": 30.0, "uacr_mg_g": 300.0}
    na, other = models.get("kfre"), models.get("kfre_non_na")
    base = na.predict(p).outputs
    assert (
        na.predict(p | {"egfr_ml_min_1_73m2": 20.0}).outputs["risk_2y_kidney_failure"]
        > (base["risk_2y_kidney_failure"])
    )
    assert (
        na.predict(p | {"uacr_mg_g": 1000.0}).outputs["risk_5y_kidney_failure"]
        > (base["risk_5y_kidney_failure"])
    )
    assert (
        na.predict(p | {"female": 0.0}).outputs["risk_2y_kidney_failure"]
        > (base["risk_2y_kidney_failure"])
    )
    assert base["risk_5y_kidney_failure"] > base["risk_2y_kidney_failure"]
    assert other.predict(p).outputs["risk_2y_kidney_failure"] < base["risk_2y_kidney_failure"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"egfr_ml_min_1_73m2": 60.0},
            "egfr_ml_min_1_73m2 = 60 mL/min/{1.73_m2} is outside 10\u201359.99 for kfre",
        ),
        (
            {"egfr_ml_min_1_73m2": 9.0},
            "egfr_ml_min_1_73m2 = 9 mL/min/{1.73_m2} is outside 10\u201359.99 for kfre",
        ),
        ({"age_years": 17.0}, "age_years = 17 years is outside 18\u2013100 for kfre"),
        ({"uacr_mg_g": 0.0}, "uacr_mg_g = 0 mg/g is outside 0.1\u201325000 for kfre"),
        ({"uacr_mg_g": -5.0}, "uacr_mg_g = -5 mg/g is outside 0.1\u201325000 for kfre"),
    ],
)
def test_out_of_range_gives_a_message(
    models: Artifacts, changes: dict[str, float], message: str
) -> None:
    """eGFR >= 60 (not CKD G3-G5), children and impossible ACR are refused by name."""
    p = {"age_years": 60.0, "female": 1.0, "egfr_ml_min_1_73m2": 30.0, "uacr_mg_g": 300.0}
    with pytest.raises(OutOfRangeError) as info:
        models.get("kfre").predict(p | changes)
    assert str(info.value) == message


def test_missing_acr_is_named(models: Artifacts) -> None:
    """Without a urine ACR there is a message, not a number."""
    p: dict[str, float | None] = {
        "age_years": 60.0, "female": 1.0, "egfr_ml_min_1_73m2": 30.0, "uacr_mg_g": math.nan,
    }  # fmt: skip
    with pytest.raises(MissingInputsError, match=r"^kfre_non_na needs uacr_mg_g; not available$"):
        models.get("kfre_non_na").predict(p)


def test_cards_name_their_calibration(models: Artifacts) -> None:
    """Each artifact's card says which region's baseline survival it carries."""
    assert "North America calibration" in models.get("kfre").card.name
    assert "2 y 0.975, 5 y 0.924" in models.get("kfre").card.population
    assert "outside North America" in models.get("kfre_non_na").card.name
    assert "2 y 0.9832, 5 y 0.9365" in models.get("kfre_non_na").card.population
