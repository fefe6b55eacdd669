"""Agreement with R posologyr's worked examples for the Goti 2018 model.

R cannot be installed here; the numbers are the rendered outputs of posologyr's vignettes
(levenc/posologyr, docs/articles/auc_based_dosing.html and case_study_vancomycin.html, built
from vignettes/auc_based_dosing.Rmd and vignettes/case_study_vancomycin.Rmd): patient B,
CLCREAT 65 mL/min, WT 70 kg, DIAL 0, 2000 mg over 2 h at 0 h, a second infusion over 2 h at
24.2 h, levels at 13 h and 48 h.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from twin_engine.pk import (
    Covariates,
    DoseEvent,
    LevelObservation,
    build_timeline,
    estimate,
    next_dose_for_auc,
)

T0 = datetime(2024, 1, 1, 8, tzinfo=UTC)
COV = Covariates(
    weight_kg=70.0, crcl_ml_min=65.0, dialysis=False, age=50.0, sex="male", creatinine_mg_dl=1.2
)


def _at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# (second dose mg, level at 48 h, posologyr ETA_Cl, ETA_Vc, ETA_Vp, AUC0-24, AUC24-48,
#  maintenance dose for AUC 400 (q24h over 2 h, 11 doses, AUC 216-240 h), next dose at 48 h)
CASES = [
    pytest.param(
        1000.0,
        9.5,
        (0.08208203, 0.06122374, 0.06285943),
        337.8965,
        325.3072,
        1198.266,
        1411.593,
        id="auc_based_dosing",
    ),
    pytest.param(
        1400.0,
        10.5,
        (0.10796053, 0.04652873, 0.06865759),
        336.4356,
        387.1362,
        1229.363,
        None,
        id="case_study_vancomycin",
    ),
]


@pytest.mark.parametrize(
    ("second", "level48", "etas", "auc24", "auc48", "maintenance", "next_dose"), CASES
)
def test_goti_reproduces_posologyr(
    goti_sim: OnnxPkSimulator,
    second: float,
    level48: float,
    etas: tuple[float, float, float],
    auc24: float,
    auc48: float,
    maintenance: float,
    next_dose: float | None,
) -> None:
    """MAP etas, MAP AUCs and the recommended doses agree with posologyr within 2 %."""
    doses = [DoseEvent(_at(0), 2.0, 2000.0, "d1"), DoseEvent(_at(24.2), 2.0, second, "d2")]
    levels = [
        LevelObservation(_at(13), 12.0, "random", "l1"),
        LevelObservation(_at(48), level48, "trough", "l2"),
    ]
    timeline = build_timeline(doses, levels, _at(48))
    post = estimate(GOTI_2018, COV, timeline, goti_sim, dialysis=False)
    np.testing.assert_allclose(post.eta_map, etas, rtol=0.02)
    # The individual parameters, which is what the 2 % criterion is about.
    ref_params = GOTI_2018.individual_parameters(
        weight_kg=70.0, crcl_ml_min=65.0, dialysis=False, eta=np.array([etas])
    )[0]
    np.testing.assert_allclose(post.params_map, ref_params, rtol=0.02)

    _, auc = goti_sim.simulate(
        post.params_map[None], timeline.doses[None], np.array([[24.0, 48.0]])
    )
    np.testing.assert_allclose([auc[0, 0], auc[0, 1] - auc[0, 0]], [auc24, auc48], rtol=0.02)

    # poso_dose_auc(starting_time = 216, interdose_interval = 24, add_dose = 10, duration = 2):
    # a fresh regimen of 11 doses from 0 h, AUC from 216 to 240 h; AUC is linear in the dose.
    regimen = np.zeros((1, 11, 3))
    regimen[0, :, 0] = np.arange(11) * 24.0
    regimen[0, :, 1] = 2.0
    regimen[0, :, 2] = 1.0
    _, unit = goti_sim.simulate(post.params_map[None], regimen, np.array([[216.0, 240.0]]))
    dose = 400.0 / (unit[0, 1] - unit[0, 0])
    assert dose == pytest.approx(maintenance, rel=0.02)
    # The exact steady state (dose = AUC x CL) is within 2 % of posologyr's 11-dose value.
    assert 400.0 * post.params_map[0] == pytest.approx(maintenance, rel=0.02)

    if next_dose is not None:
        amount, duration = next_dose_for_auc(
            goti_sim,
            post.params_map[None],
            timeline.doses,
            start_h=48.0,
            target_auc=400.0,
            duration_h=2.0,
        )
        assert duration == 2.0
        assert amount == pytest.approx(next_dose, rel=0.02)
