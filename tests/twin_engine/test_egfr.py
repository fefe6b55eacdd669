"""CKD-EPI 2021 creatinine equation against an independent form and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin_engine.egfr import ckd_epi_2021


def _independent(scr: float, age: float, female: bool) -> float:
    """Inker et al., NEJM 2021, written piecewise in log space (no min/max)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    log_ratio = math.log(scr) - math.log(kappa)
    exponent = alpha if log_ratio < 0 else -1.2
    log_egfr = math.log(142) + exponent * log_ratio + age * math.log(0.9938)
    if female:
        log_egfr += math.log(1.012)
    return math.exp(log_egfr)


def test_matches_an_independent_log_form_over_random_inputs() -> None:
    """600 random adults agree with the log-space form to 1e-9 relative."""
    rng = np.random.default_rng(20210923)
    for _ in range(600):
        scr = float(rng.uniform(0.2, 15.0))
        age = float(rng.integers(18, 100))
        female = bool(rng.integers(0, 2))
        assert ckd_epi_2021(scr, age, female=female) == pytest.approx(
            _independent(scr, age, female), rel=1e-9
        )


@pytest.mark.parametrize(
    ("scr", "age", "female", "expected"),
    [
        # 142 x (1.0/0.7)^-1.2 x 0.9938^50 x 1.012 = 142 x 0.65182 x 0.73277 x 1.012 = 68.6
        (1.0, 50, True, 68.6),
        # 142 x (1.0/0.9)^-1.2 x 0.9938^50 = 142 x 0.88124 x 0.73277 = 91.7
        (1.0, 50, False, 91.7),
        # below kappa: 142 x (0.8/0.9)^-0.302 x 0.9938^60 = 142 x 1.03621 x 0.68855 = 101.3
        (0.8, 60, False, 101.3),
        # at kappa both factors are 1: 142 x 0.9938^40 x 1.012 = 142 x 0.77992 x 1.012 = 112.1
        (0.7, 40, True, 112.1),
    ],
)
def test_hand_worked_values(scr: float, age: int, female: bool, expected: float) -> None:
    """Values worked by hand in the comments (NKF calculator gives 69, 92, 101, 112)."""
    assert ckd_epi_2021(scr, age, female=female) == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize(("scr", "age"), [(0.0, 50), (-1.0, 50), (1.0, 17)])
def test_rejects_inputs_outside_the_equation(scr: float, age: int) -> None:
    """Non-positive creatinine and children are refused, not extrapolated."""
    with pytest.raises(ValueError):
        ckd_epi_2021(scr, age, female=True)
