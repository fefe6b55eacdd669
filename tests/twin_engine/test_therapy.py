"""What-if therapy effects reproduce the published relative risks."""

from __future__ import annotations

import math

import pytest

from twin_engine.therapy import TherapyError, apply_therapy, sbp_relative_risk, statin_relative_risk


def test_one_mmol_l_ldl_reduction_is_the_ctt_rate_ratio() -> None:
    """LDL-C lowered by exactly 1.0 mmol/L gives RR 0.78 (CTT, Lancet 2010)."""
    # High intensity lowers LDL-C by 50%: 2 mmol/L (77.34 mg/dL) -> 1 mmol/L reduction.
    assert statin_relative_risk(2 * 38.67, "high") == pytest.approx(0.78, abs=1e-12)


def test_ten_mm_hg_is_the_ettehad_relative_risk() -> None:
    """SBP 150 -> 140 gives RR 0.80; already at target gives 1.0 (Ettehad, Lancet 2016)."""
    assert sbp_relative_risk(150, 140) == pytest.approx(0.80, abs=1e-12)
    assert sbp_relative_risk(150, 130) == pytest.approx(0.64, abs=1e-12)
    assert sbp_relative_risk(125, 130) == 1.0


@pytest.mark.parametrize("ldl", [70.0, 100.0, 130.0, 160.0, 190.0])
@pytest.mark.parametrize("risk", [0.05, 0.1, 0.2])
def test_combined_effect_is_multiplicative_and_reduces_risk(ldl: float, risk: float) -> None:
    """Statin and BP effects multiply; the absolute reduction is risk x (1 - RR)."""
    effect = apply_therapy(
        risk, ldl_mg_dl=ldl, statin="moderate", sbp_mm_hg=150, sbp_target_mm_hg=130
    )
    expected_rr = 0.78 ** (ldl * 0.30 / 38.67) * 0.80**2
    assert effect.relative_risk == pytest.approx(expected_rr, rel=1e-12)
    assert effect.absolute_risk_reduction == pytest.approx(risk * (1 - expected_rr), rel=1e-12)
    assert 0 < effect.risk_after < effect.risk_before
    assert math.isclose(effect.risk_after, risk * expected_rr)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"statin": "high"}, "LDL-C"),
        ({"sbp_target_mm_hg": 130}, "SBP"),
        ({}, "no therapy"),
    ],
)
def test_a_what_if_without_its_input_is_refused(kwargs: dict[str, object], message: str) -> None:
    """A what-if never guesses a missing value."""
    with pytest.raises(TherapyError, match=message):
        apply_therapy(0.1, **kwargs)  # type: ignore[arg-type]
