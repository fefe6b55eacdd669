"""Forecast self-check on simulated patients: unbiased when the model is true, drift when not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cds_service.audit.archive import ModelArchive, pk_artifact
from cds_service.audit.basis import history_to_json
from cds_service.audit.log import AuditEntry, ModelUse, StoredAuditRecord
from cds_service.audit.selfcheck import median_interval, self_check
from cds_service.audit.sql import SqliteAuditLog
from cds_service.services.vancomycin import simulator_for
from cds_service.settings import Settings
from onnx_models.pk.models import MODELS
from twin_engine.pk.covariates import model_crcl
from twin_engine.pk.estimate import build_timeline, estimate, residual_sd
from twin_engine.pk.history import DialysisEvidence, Measured, PatientHistory
from twin_engine.pk.recommend import covariates_from_history
from twin_engine.pk.types import DoseEvent, LevelObservation

MODEL_ID = Settings().vancomycin_model
PATIENTS = 40
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DOSE_MG, EVERY_H, INFUSION_H = 1000.0, 12.0, 1.0
#: The trough before the fifth dose.
LEVEL_AT_H = 47.5


def _history(pid: str, cov: dict[str, Any], doses: int, level: float | None) -> PatientHistory:
    return PatientHistory(
        patient=f"Patient/{pid}",
        age=cov["age"],
        sex=cov["sex"],
        weight=Measured(cov["weight"], T0 - timedelta(hours=6), f"Observation/{pid}-wt"),
        creatinine=Measured(cov["scr"], T0 - timedelta(hours=6), f"Observation/{pid}-scr"),
        dialysis=DialysisEvidence(False, f"Condition/{pid}-dx", "dialysis resolved"),
        doses=tuple(
            DoseEvent(T0 + timedelta(hours=EVERY_H * i), INFUSION_H, DOSE_MG, f"MA/{pid}-{i}")
            for i in range(doses)
        ),
        levels=(
            (LevelObservation(T0 + timedelta(hours=LEVEL_AT_H), level, "trough", f"Obs/{pid}-lv"),)
            if level is not None
            else ()
        ),
        notes=(),
    )


def _doses_h(n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([[EVERY_H * i, INFUSION_H, DOSE_MG] for i in range(n)], dtype=np.float64)


def simulate(cl_factor: float, seed: int) -> tuple[list[AuditEntry], list[float]]:
    """Patients forecast a priori at the first dose, then a trough measured at 47.5 h from
    'true' parameters drawn from the model (CL times cl_factor) with its residual error.
    Returns the audit entries and the directly computed prediction errors."""
    model, sim = MODELS[MODEL_ID], simulator_for(MODEL_ID)
    use = ModelUse(MODEL_ID, sim.card.version, sim.sha256)
    rng = np.random.default_rng(seed)
    omega = np.array(model.omega, dtype=np.float64)
    entries: list[AuditEntry] = []
    errors: list[float] = []
    for n in range(PATIENTS):
        pid = f"sim-{n}"
        cov: dict[str, Any] = {
            "age": float(rng.uniform(30, 80)),
            "sex": "female" if n % 2 else "male",
            "weight": float(rng.uniform(55, 100)),
            "scr": float(rng.uniform(0.7, 1.4)),
        }
        crcl = model_crcl(
            model,
            age=cov["age"],
            weight_kg=cov["weight"],
            creatinine_mg_dl=cov["scr"],
            sex=cov["sex"],
        )
        eta = rng.multivariate_normal(np.zeros(len(omega)), omega)
        truth = model.individual_parameters(
            weight_kg=cov["weight"], crcl_ml_min=crcl, dialysis=False, eta=eta
        )
        truth[:, 0] *= cl_factor
        times = np.array([[LEVEL_AT_H]])
        f_true, _ = sim.simulate(truth, _doses_h(4)[None], times)
        observed = float(f_true[0, 0] + residual_sd(model, f_true[0])[0] * rng.standard_normal())
        observed = max(observed, 0.5)
        # The a priori forecast: the median level over the model's prior samples (the
        # samples the service draws: its default count and seed), over the doses given.
        prior = estimate(
            model,
            covariates_from_history(_history(pid, cov, 1, None), model, as_of=T0, dialysis=None),
            build_timeline(_history(pid, cov, 1, None).doses, [], T0),
            sim,
            dialysis=False,
        )
        k = prior.params_samples.shape[0]
        f_pred, _ = sim.simulate(
            prior.params_samples, np.repeat(_doses_h(4)[None], k, 0), np.full((k, 1), LEVEL_AT_H)
        )
        predicted = float(np.median(f_pred[:, 0]))
        errors.append((predicted - observed) / observed)
        for i, (doses, level, at_h) in enumerate(((1, None, 0.25), (4, observed, 48.0))):
            as_of = T0 + timedelta(hours=at_h)
            entries.append(
                AuditEntry(
                    hook_instance=f"{pid}-{i}",
                    hook="order-sign",
                    service_id="vancomycin-dosing-sign",
                    patient_id=pid,
                    status="ok",
                    duration_ms=1.0,
                    model=use,
                    client_tenant="hospital-a",
                    replay_basis={
                        "kind": "dosing",
                        "asOf": as_of.isoformat(),
                        "appLaunchUrl": "http://testserver/app/launch",
                        "pkModel": MODEL_ID,
                        "draft": {"resourceType": "MedicationRequest", "id": "d"},
                        "history": history_to_json(_history(pid, cov, doses, level)),
                        "problem": None,
                    },
                )
            )
    return entries, errors


def _records(tmp_path: Path, entries: list[AuditEntry]) -> list[StoredAuditRecord]:
    log = SqliteAuditLog(tmp_path / "audit.sqlite", checkpoint_every=0)
    try:
        for e in entries:
            log.record(e)
        return log.records()
    finally:
        log.close()


@pytest.fixture()
def archive(tmp_path: Path) -> ModelArchive:
    archive = ModelArchive(tmp_path / "archive")
    archive.keep(pk_artifact(MODEL_ID).read_bytes())
    return archive


def _check(
    tmp_path: Path, archive: ModelArchive, cl_factor: float
) -> tuple[dict[str, Any], list[float]]:
    entries, errors = simulate(cl_factor, seed=11)
    report = self_check(_records(tmp_path, entries), archive, mdpe_bound=0.15, mdape_bound=0.30)
    return report, errors


def test_a_true_model_is_unbiased_and_equals_the_direct_computation(
    tmp_path: Path, archive: ModelArchive
) -> None:
    """Levels from the model itself: MDPE and MDAPE equal a direct computation; no drift."""
    report, errors = _check(tmp_path, archive, cl_factor=1.0)
    (model,) = report["models"]
    assert model["pairs"] == PATIENTS
    assert model["mdpe"] == pytest.approx(float(np.median(errors)), abs=1e-9)
    assert model["mdape"] == pytest.approx(float(np.median(np.abs(errors))), abs=1e-9)
    assert abs(model["mdpe"]) < 0.15
    assert model["mdpeInterval95"][0] <= 0.0 <= model["mdpeInterval95"][1]
    assert model["drift"] is False


def test_a_shifted_model_raises_the_drift_flag(tmp_path: Path, archive: ModelArchive) -> None:
    """Patients clearing 40% less than the model says: levels above the forecasts, drift flagged."""
    report, errors = _check(tmp_path, archive, cl_factor=0.6)
    (model,) = report["models"]
    assert model["mdpe"] == pytest.approx(float(np.median(errors)), abs=1e-9)
    assert model["mdpe"] < -0.15
    assert model["mdpeInterval95"][1] < 0.0
    assert model["drift"] is True
    assert "drift" in model["reason"]


def test_a_level_is_paired_with_the_forecast_made_before_it(
    tmp_path: Path, archive: ModelArchive
) -> None:
    """Each level is paired once, with the record that forecast it and the one that brought it."""
    report, _ = _check(tmp_path, archive, cl_factor=1.0)
    # Each patient's two calls are consecutive records: the forecast, then the measurement.
    assert sorted((p["forecastSeq"], p["measuredSeq"]) for p in report["pairs"]) == [
        (2 * n + 1, 2 * n + 2) for n in range(PATIENTS)
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0], None),  # n = 5: P(Bin(5, 1/2) = 0) = 3.1% > 2.5%
        ([6.0, 1.0, 5.0, 2.0, 4.0, 3.0], (1.0, 6.0)),  # n = 6: the extremes (1/64 <= 2.5%)
        ([float(i) for i in range(1, 21)], (6.0, 15.0)),  # n = 20: the 6th and 15th (Conover table)
    ],
)
def test_median_interval_from_order_statistics(
    values: list[float], expected: tuple[float, float] | None
) -> None:
    """The distribution-free 95% interval of the median matches the binomial tables."""
    assert median_interval(values) == expected
