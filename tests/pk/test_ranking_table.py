"""Regimen ranking on a CrCl x weight table: consensus rules hold, time of day changes nothing;
cases a pharmacist recognises; neighbouring intervals only when needed; ties deterministic."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from tests.support.vancomycin import administration, observation, patient
from twin_engine.pk import Covariates, Regimen, plan_dosing, recommend
from twin_engine.pk.regimen import (
    candidate_intervals,
    infusion_hours,
    maintenance_doses,
    rank_regimens,
    steady_state_peak_trough,
)
from twin_engine.pk.types import FloatArray

CRCL = (20.0, 35.0, 50.0, 65.0, 80.0, 100.0, 120.0)
WEIGHT = (50.0, 70.0, 90.0, 120.0)
DAY = datetime(2024, 6, 3, tzinfo=UTC)


def _plan(crcl: float, weight: float, at: datetime, sim: OnnxPkSimulator) -> list[Regimen]:
    cov = Covariates(weight, crcl, False, 60.0, "male", 1.0)
    result = plan_dosing(
        covariates=cov, doses=[], levels=[], as_of=at, model=GOTI_2018, simulator=sim
    )
    return [p.regimen for p in result.recommendations]


@pytest.fixture(scope="module")
def table(goti_sim: OnnxPkSimulator) -> dict[tuple[float, float], list[Regimen]]:
    return {(c, w): _plan(c, w, DAY + timedelta(minutes=5), goti_sim) for c in CRCL for w in WEIGHT}


# The intervals usual at each CrCl of the table (CAMERA2 Table 1, Rybak 2020), written out
# here rather than read from `CONSENSUS_2020`, so a wrong edit of the rules fails.
USUAL_INTERVALS = {
    20.0: {24.0},
    35.0: {24.0},
    50.0: {24.0},
    65.0: {12.0},
    80.0: {12.0},
    100.0: {8.0, 12.0},
    120.0: {8.0, 12.0},
}


def test_top_regimens_obey_the_consensus_rules(
    table: dict[tuple[float, float], list[Regimen]],
) -> None:
    """Every recommended regimen: the interval usual at the CrCl, 250 mg steps up to the step
    at or above 20 mg/kg and 2 g, loading 20-35 mg/kg <= 3 g and above the maintenance dose."""
    for (crcl, weight), regimens in table.items():
        assert regimens, (crcl, weight)
        ceiling = min(2000.0, math.ceil(20.0 * weight / 250.0) * 250.0)
        for r in regimens:
            where = (crcl, weight, r.describe())
            assert r.interval_h in USUAL_INTERVALS[crcl], where
            assert r.dose_mg % 250 == 0 and 250 <= r.dose_mg <= ceiling, where
            assert r.dose_mg in maintenance_doses(weight), where
            assert r.infusion_h == infusion_hours(r.dose_mg), where
            if r.loading_dose_mg is not None:
                assert 20 * weight <= r.loading_dose_mg <= min(3000, 35 * weight), where
                assert r.loading_dose_mg > r.dose_mg, where


def test_every_row_of_the_table_has_a_regimen_likely_on_target(
    table: dict[tuple[float, float], list[Regimen]], goti_sim: OnnxPkSimulator
) -> None:
    """The rules never leave a patient without a regimen whose median AUC24 is in 400-600."""
    for (crcl, weight), regimens in table.items():
        cl = GOTI_2018.individual_parameters(
            weight_kg=weight, crcl_ml_min=crcl, dialysis=False, eta=np.zeros((1, 3))
        )[0, 0]
        top = regimens[0]
        assert 400 <= top.dose_mg * 24 / top.interval_h / cl <= 600, (crcl, weight)


@pytest.mark.parametrize(
    ("crcl", "weight", "intervals", "doses"),
    [
        # Normal renal function: every 8-12 h (Rybak 2020), 1000-1500 mg for 80 kg.
        (110.0, 80.0, {8.0, 12.0}, (1000.0, 1500.0)),
        # The usual choices at CrCl 65 and 70 kg: 750-1000 mg every 12 h ...
        (65.0, 70.0, {12.0}, (750.0, 1000.0)),
        # ... and 1000-1500 mg every 24 h once CrCl is below 60 (CAMERA2: 1 g every 24 h).
        (50.0, 70.0, {24.0}, (1000.0, 1500.0)),
        # CrCl 30: every 24 h or longer, never more than 1 g a day.
        (30.0, 70.0, {24.0, 36.0, 48.0}, (250.0, 1000.0)),
        # CrCl below 20: every 48 h (CAMERA2), a dose a pharmacist would write (500-1000 mg).
        (15.0, 70.0, {48.0}, (500.0, 1000.0)),
    ],
)
def test_cases_a_pharmacist_recognises(
    crcl: float,
    weight: float,
    intervals: set[float],
    doses: tuple[float, float],
    goti_sim: OnnxPkSimulator,
) -> None:
    """Typical patients without levels get the regimens the consensus and CAMERA2 name."""
    top = _plan(crcl, weight, DAY, goti_sim)[0]
    assert top.interval_h in intervals, top.describe()
    assert doses[0] <= top.dose_mg <= doses[1], top.describe()


def test_dialysis_is_dosed_every_48_hours(goti_sim: OnnxPkSimulator) -> None:
    """On dialysis the lowest row applies whatever the CrCl: every 48 h; at CrCl 10 mL/min
    500-750 mg (a dose after each session, as pharmacists write it)."""
    tops = []
    for crcl in (10.0, 40.0):
        cov = Covariates(70.0, crcl, True, 60.0, "male", 1.0)
        result = plan_dosing(
            covariates=cov, doses=[], levels=[], as_of=DAY, model=GOTI_2018, simulator=goti_sim
        )
        tops.append(result.recommendations[0].regimen)
    assert [r.interval_h for r in tops] == [48.0, 48.0]
    assert 500 <= tops[0].dose_mg <= 750, tops[0].describe()


def _exact(cl_l_h: float, n: int = 200) -> FloatArray:
    """Posterior samples with a clearance known exactly (volumes of Goti 2018 at 70 kg)."""
    return np.tile([cl_l_h, 58.4, 6.5, 38.4], (n, 1))


def test_longer_interval_only_when_every_24_hours_overshoots() -> None:
    """CrCl 40 but levels show CL 0.3 L/h: 250 mg every 24 h gives AUC24 833, so every 36 h
    joins (and wins); with CL 1.5 L/h every 24 h reaches the target and stays alone."""
    slow = rank_regimens(_exact(0.3), weight_kg=70.0, crcl_ml_min=40.0, dialysis=False)
    assert slow[0].regimen.interval_h == 36.0
    assert {p.regimen.interval_h for p in slow} == {24.0, 36.0}
    usual = rank_regimens(_exact(1.5), weight_kg=70.0, crcl_ml_min=40.0, dialysis=False)
    assert [p.regimen.interval_h for p in usual] == [24.0]


def test_shorter_interval_only_when_every_12_hours_falls_short() -> None:
    """CrCl 70 but CL 10 L/h: 1500 mg every 12 h gives AUC24 300, so every 8 h joins."""
    fast = rank_regimens(_exact(10.0), weight_kg=70.0, crcl_ml_min=70.0, dialysis=False)
    assert fast[0].regimen.interval_h == 8.0
    assert 400 <= fast[0].auc24_ss_mg_h_l <= 600
    assert candidate_intervals(
        np.array([3.0]), maintenance_doses(70.0), (400.0, 600.0), crcl_ml_min=70.0, dialysis=False
    ) == [12.0]


def test_ties_go_to_the_shorter_interval() -> None:
    """CL 4 L/h: 750 mg q8h (AUC24 562) and 1000 mg q12h (500) are both certainly on target;
    the shorter interval comes first, every time."""
    ranked = rank_regimens(_exact(4.0), weight_kg=80.0, crcl_ml_min=100.0, dialysis=False)
    assert [(p.regimen.dose_mg, p.regimen.interval_h) for p in ranked] == [
        (750.0, 8.0),
        (1000.0, 12.0),
    ]


def test_table_does_not_change_through_the_day(
    table: dict[tuple[float, float], list[Regimen]], goti_sim: OnnxPkSimulator
) -> None:
    """The same patients asked at 23:55 get the regimens they got at 00:05."""
    late = {
        (c, w): _plan(c, w, DAY + timedelta(hours=23, minutes=55), goti_sim)
        for c in CRCL
        for w in WEIGHT
    }
    assert late == table


def test_record_with_history_ranks_the_same_at_any_hour(goti_sim: OnnxPkSimulator) -> None:
    """Doses and a level the day before: the ranking at 00:05 equals the one at 23:55."""
    t0 = datetime(2024, 3, 1, 8, tzinfo=UTC)
    record = [
        patient(),
        observation("wt", "29463-7", 80.0, "kg", -2),
        observation("scr", "2160-0", 1.1, "mg/dL", -2),
        *(administration(f"d{k}", 12 * k, 1250, duration_h=1.5) for k in range(3)),
        observation("lvl", "20578-1", 14.0, "mg/L", 35.5),
    ]
    runs = [
        recommend(
            record,
            as_of=datetime(2024, 3, 3, 0, 5, tzinfo=UTC) + timedelta(minutes=m),
            model=GOTI_2018,
            simulator=goti_sim,
        )
        for m in (0, 23 * 60 + 50)
    ]
    assert t0 < runs[0].as_of
    early, late = ([p.regimen for p in r.recommendations] for r in runs)
    assert early == late


def test_closed_form_peak_and_trough_match_the_simulator(goti_sim: OnnxPkSimulator) -> None:
    """Steady-state peak/trough in closed form equal the ONNX simulation of 300 doses
    (enough for steady state even at a 200 h half-life)."""
    eta = np.random.default_rng(3).multivariate_normal(np.zeros(3), GOTI_2018.omega, 20)
    params = GOTI_2018.individual_parameters(weight_kg=75, crcl_ml_min=60, dialysis=False, eta=eta)
    dose, tau, tinf = 1250.0, 12.0, 1.5
    peak, trough = steady_state_peak_trough(params, dose, tau, tinf)
    rows = np.array([[k * tau, tinf, dose] for k in range(300)])
    last = 299 * tau
    conc, _ = goti_sim.simulate(
        params,
        np.broadcast_to(rows, (20, *rows.shape)),
        np.broadcast_to(np.array([last + tinf, last + tau]), (20, 2)),
    )
    assert np.allclose(peak, conc[:, 0], rtol=1e-3)
    assert np.allclose(trough, conc[:, 1], rtol=1e-3)
