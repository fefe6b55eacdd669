"""Regimen ranking on a CrCl x weight table: consensus rules hold, time of day changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from onnx_models.pk import GOTI_2018, OnnxPkSimulator
from twin_engine.pk import Covariates, Regimen, plan_dosing, recommend
from twin_engine.pk.regimen import (
    CONSENSUS_2020,
    infusion_hours,
    maintenance_doses,
    steady_state_peak_trough,
)

from .fhir import administration, observation, patient

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


def test_top_regimens_obey_the_consensus_rules(
    table: dict[tuple[float, float], list[Regimen]],
) -> None:
    """Every recommended regimen: q8-24h (longer only if q24h overshoots), 250 mg steps in
    the 15-20 mg/kg band, <= 2 g, loading 20-35 mg/kg <= 3 g and above the maintenance dose."""
    for (crcl, weight), regimens in table.items():
        allowed = maintenance_doses(weight)
        assert regimens, (crcl, weight)
        for r in regimens:
            where = (crcl, weight, r.describe())
            assert r.dose_mg in allowed and r.dose_mg % 250 == 0, where
            assert r.dose_mg <= CONSENSUS_2020.max_maintenance_mg, where
            assert 14 * weight - 250 < r.dose_mg < 21 * weight + 250, where
            assert r.interval_h in (8.0, 12.0, 24.0, 36.0, 48.0), where
            assert r.infusion_h == infusion_hours(r.dose_mg), where
            if r.loading_dose_mg is not None:
                assert 20 * weight <= r.loading_dose_mg <= min(3000, 35 * weight), where
                assert r.loading_dose_mg > r.dose_mg, where


def test_extended_intervals_only_when_clearance_is_low(
    table: dict[tuple[float, float], list[Regimen]],
) -> None:
    """q36h/q48h lead at CrCl 20 mL/min; never offered at CrCl >= 80."""
    for (crcl, weight), regimens in table.items():
        if crcl >= 80:
            assert all(r.interval_h <= 24 for r in regimens), (crcl, weight)
        if crcl == 20:
            assert regimens[0].interval_h > 24, weight


def test_usual_choices_at_moderate_clearance(
    table: dict[tuple[float, float], list[Regimen]],
) -> None:
    """CrCl 65, 70 kg: q12h or q24h at 1000-1500 mg, not 2250 mg q36h (issue finding)."""
    top = table[(65.0, 70.0)][0]
    assert top.interval_h in (12.0, 24.0)
    assert 1000 <= top.dose_mg <= 1500


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
