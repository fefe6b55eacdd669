"""The in-silico trial on hand-checkable populations, and the --eligible expressions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin_engine.population import EligibilityError, TrialPatient, evaluate, run_trial
from twin_engine.therapy import CHOLESTEROL_MG_DL_PER_MMOL_L

#: LDL-C at which a moderate-intensity statin (30%) lowers LDL-C by exactly 1 mmol/L.
LDL_1_MMOL_DROP_MODERATE = CHOLESTEROL_MG_DL_PER_MMOL_L / 0.30


def _ten(risk: float, **kw: object) -> list[TrialPatient]:
    base = {"ldl_mg_dl": LDL_1_MMOL_DROP_MODERATE, "sbp_mm_hg": 150.0, "on_statin": False}
    return [TrialPatient(risk_10y=risk, **{**base, **kw}) for _ in range(10)]  # type: ignore[arg-type]


def test_moderate_statin_on_ten_patients_at_20_percent() -> None:
    """10 x 20% risk, LDL-C drop 1 mmol/L (RR 0.78): 2.0 vs 1.56 events, ARR 4.4%, NNT 22.7."""
    r = run_trial(_ten(0.20), "statin-moderate", draws=0)
    assert r.treated == 10
    assert r.events_without == pytest.approx(2.0)
    assert r.events_with == pytest.approx(1.56)
    assert r.absolute_risk_reduction == pytest.approx(0.044)
    assert r.number_needed_to_treat == pytest.approx(1 / 0.044)


def test_sbp_130_from_150_is_two_ettehad_steps() -> None:
    """SBP 150 -> 130 is 2 x 10 mm Hg: RR 0.8^2 = 0.64; at 10% risk ARR 3.6%, NNT 27.8."""
    r = run_trial(_ten(0.10), "sbp-130", draws=0)
    assert r.events_with == pytest.approx(0.64)
    assert r.absolute_risk_reduction == pytest.approx(0.036)
    assert r.number_needed_to_treat == pytest.approx(1 / 0.036)


def test_patients_already_treated_are_excluded_and_counted() -> None:
    """Those on a statin, and those at SBP <= 130, are named reasons, not silently dropped."""
    on = _ten(0.2, on_statin=True)
    assert run_trial(on, "statin-high", draws=0).excluded == {"already on a statin": 10}
    low = _ten(0.2, sbp_mm_hg=125.0)
    assert run_trial(low, "sbp-130", draws=0).excluded == {"SBP already at or below 130 mm Hg": 10}


def test_interval_brackets_the_point_and_follows_the_published_ci() -> None:
    """The 95% interval of the ARR holds the point estimate and the CI's ends (0.76-0.80/mmol)."""
    r = run_trial(_ten(0.20), "statin-moderate", draws=4000, seed=1)
    assert r.interval_absolute_risk_reduction is not None
    low, high = r.interval_absolute_risk_reduction.low, r.interval_absolute_risk_reduction.high
    assert low < r.absolute_risk_reduction < high
    # With a 1 mmol/L drop the ARR is 0.2 x (1 - RR): the CI's ends give 0.040 and 0.048.
    assert low == pytest.approx(0.2 * (1 - 0.80), abs=0.002)
    assert high == pytest.approx(0.2 * (1 - 0.76), abs=0.002)
    assert r.interval_number_needed_to_treat is not None
    assert r.interval_number_needed_to_treat.low == pytest.approx(1 / high)


def test_no_one_treated_gives_no_nnt() -> None:
    """Nothing averted: NNT is not a number (infinite), reported as None."""
    r = run_trial(_ten(0.2, on_statin=True), "statin-moderate", draws=100)
    assert r.number_needed_to_treat is None and r.treated == 0


def test_eligibility_expression_selects_rows() -> None:
    """'risk >= 0.075 and not on_statin' selects exactly the matching rows; NaN fails."""
    cols = {
        "risk": np.array([0.05, 0.08, 0.2, math.nan]),
        "on_statin": np.array([False, False, True, False]),
    }
    mask = evaluate("risk >= 0.075 and not on_statin", cols, 4)
    assert mask.tolist() == [False, True, False, False]


@pytest.mark.parametrize(
    "expr", ["__import__('os')", "risk.real > 0", "unknown > 1", "risk + 1", "risk >"]
)
def test_eligibility_refuses_what_is_not_a_plain_condition(expr: str) -> None:
    """Calls, attributes, unknown columns, arithmetic results and bad syntax are refused."""
    with pytest.raises(EligibilityError):
        evaluate(expr, {"risk": np.array([0.1])}, 1)
