"""Forecast self-check: did the vancomycin forecasts come true?

A forecast is a dosing record whose PK twin was fitted (its replay basis holds the PK
history and no problem). A later measurement is a vancomycin level, drawn after that
record's ``asOf``, that a later dosing call for the same patient (same tenant and twin
key) brought in its history. Each level is paired once, with the latest forecast made
before it was drawn. The predicted level is the median of the forecast's posterior
predictive: the posterior samples the card's intervals came from (refitted from its
record, with the archived model file of the recorded sha256), each run over the doses
actually given (the later call's history) to the level's time. The median, not the
typical (MAP) patient's level: with Goti 2018's between-subject variance on V1
(omega^2 0.51) the typical patient's trough lies about 12% above the median trough of
patients drawn from the model, so a true model would look biased.

Per model and version: the prediction error PE = (predicted - observed) / observed; its
median MDPE (bias) and the median of |PE|, MDAPE (imprecision) (Sheiner & Beal, J
Pharmacokinet Biopharm 1981;9:503), each with a distribution-free 95% interval from the
order statistics (Conover, Practical Nonparametric Statistics, 3rd ed., 1999, §3.2;
none below 6 pairs, where no such interval exists). The model drifts when |MDPE|
exceeds the bound and the interval excludes 0; it is imprecise when MDAPE exceeds its
bound (bounds: ``Settings.selfcheck_*``, with their source).

The longitudinal twin's other forecasts (risk trajectories) are not checked here yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from cds_service.audit.archive import ModelArchive
from cds_service.audit.basis import history_from_json
from cds_service.audit.chain import StoredAuditRecord
from twin_engine.pk.history import PatientHistory
from twin_engine.pk.types import LevelObservation

#: Coverage of the reported intervals.
CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class ForecastPair:
    """One forecast and the level measured after it."""

    model_id: str
    model_version: str
    forecast_seq: int
    measured_seq: int
    level_time: datetime
    level_source: str
    predicted_mg_l: float
    observed_mg_l: float

    @property
    def prediction_error(self) -> float:
        return (self.predicted_mg_l - self.observed_mg_l) / self.observed_mg_l

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "version": self.model_version,
            "forecastSeq": self.forecast_seq,
            "measuredSeq": self.measured_seq,
            "levelTime": self.level_time.isoformat(),
            "levelSource": self.level_source,
            "predictedMgL": self.predicted_mg_l,
            "observedMgL": self.observed_mg_l,
            "predictionError": self.prediction_error,
        }


@dataclass(frozen=True, slots=True)
class _Forecast:
    seq: int
    model_id: str
    model_version: str
    sha256: str
    as_of: datetime
    history: PatientHistory


def _forecast(rec: StoredAuditRecord) -> _Forecast | None:
    basis = rec.body.get("replayBasis")
    model = rec.body.get("model")
    if (
        rec.kind != "hook"
        or not isinstance(basis, dict)
        or basis.get("kind") != "dosing"
        or not basis.get("history")
        or basis.get("problem")
        or not isinstance(model, dict)
    ):
        return None
    return _Forecast(
        rec.seq,
        str(model["id"]),
        str(model["version"]),
        str(model["sha256"]),
        datetime.fromisoformat(basis["asOf"]),
        history_from_json(basis["history"]),
    )


def _patient_key(rec: StoredAuditRecord) -> tuple[str, str]:
    body = rec.body
    tenant = (body.get("client") or {}).get("tenant") or ""
    twin = body.get("twin") or {}
    return str(tenant), str(twin.get("storeKey") or body.get("patient"))


class _Predictor:
    """A forecast's posterior samples (fitted once) run over the doses actually given."""

    def __init__(self, archive: ModelArchive) -> None:
        self._archive = archive
        self._simulators: dict[str, Any] = {}
        self._params: dict[int, np.ndarray[Any, np.dtype[np.float64]]] = {}

    def _simulator(self, f: _Forecast) -> Any:
        if f.sha256 not in self._simulators:
            what = f"PK model {f.model_id} v{f.model_version}"
            self._simulators[f.sha256] = self._archive.simulator(f.sha256, what)
        return self._simulators[f.sha256]

    def params(self, f: _Forecast) -> np.ndarray[Any, np.dtype[np.float64]]:
        from onnx_models.pk.models import MODELS
        from twin_engine.pk.estimate import build_timeline, estimate
        from twin_engine.pk.recommend import covariates_from_history

        if f.seq not in self._params:
            model = MODELS[f.model_id]
            covariates = covariates_from_history(f.history, model, as_of=f.as_of, dialysis=None)
            timeline = build_timeline(f.history.doses, f.history.levels, f.as_of)
            # The service's own sample count and seed: the samples behind the card.
            posterior = estimate(
                model, covariates, timeline, self._simulator(f), dialysis=bool(covariates.dialysis)
            )
            self._params[f.seq] = posterior.params_samples
        return self._params[f.seq]

    def predict(self, f: _Forecast, given: PatientHistory, level: LevelObservation) -> float:
        from twin_engine.pk.estimate import build_timeline

        timeline = build_timeline(given.doses, [level], level.time)
        samples = self.params(f)
        n = samples.shape[0]
        conc, _ = self._simulator(f).simulate(
            samples,
            np.repeat(timeline.doses[None], n, axis=0),
            np.repeat(timeline.level_times_h[None, :], n, axis=0),
        )
        return float(np.median(conc[:, 0]))


def forecast_pairs(
    records: Iterable[StoredAuditRecord], archive: ModelArchive
) -> list[ForecastPair]:
    """Every (forecast, later level) pair in the records (hook records, chain order)."""
    by_patient: dict[tuple[str, str], list[tuple[StoredAuditRecord, _Forecast]]] = {}
    for rec in records:
        f = _forecast(rec)
        if f is not None:
            by_patient.setdefault(_patient_key(rec), []).append((rec, f))
    predictor = _Predictor(archive)
    pairs: list[ForecastPair] = []
    for calls in by_patient.values():
        paired: set[tuple[str, datetime]] = set()
        for i, (rec, later) in enumerate(calls):
            for level in later.history.levels:
                key = (level.source, level.time)
                if key in paired:
                    continue
                # The latest earlier forecast made before the level was drawn.
                before = [f for _, f in calls[:i] if f.as_of < level.time]
                if not before:
                    continue
                paired.add(key)
                forecast = before[-1]
                pairs.append(
                    ForecastPair(
                        forecast.model_id,
                        forecast.model_version,
                        forecast.seq,
                        rec.seq,
                        level.time,
                        level.source,
                        predictor.predict(forecast, later.history, level),
                        level.value_mg_l,
                    )
                )
    return pairs


def median_interval(values: Iterable[float]) -> tuple[float, float] | None:
    """Distribution-free 95% interval of the median from the order statistics (Conover
    1999): [x_(k), x_(n-k+1)] with the largest k such that P(Bin(n, 1/2) < k) <= 2.5%."""
    xs = sorted(values)
    n = len(xs)
    alpha = 1 - CONFIDENCE
    k = 0
    cumulative = 0.0
    while True:
        cumulative += math.comb(n, k) / 2**n  # P(Bin(n, 1/2) = k)
        if cumulative > alpha / 2:
            break
        k += 1
    # P(Bin < k) <= alpha/2 with k counted from 0: the k-th order statistic (1-based).
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]


@dataclass(frozen=True, slots=True)
class ModelCheck:
    model_id: str
    model_version: str
    pairs: int
    mdpe: float
    mdpe_interval: tuple[float, float] | None
    mdape: float
    mdape_interval: tuple[float, float] | None
    drift: bool
    imprecise: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "version": self.model_version,
            "pairs": self.pairs,
            "mdpe": self.mdpe,
            "mdpeInterval95": list(self.mdpe_interval) if self.mdpe_interval else None,
            "mdape": self.mdape,
            "mdapeInterval95": list(self.mdape_interval) if self.mdape_interval else None,
            "drift": self.drift,
            "imprecise": self.imprecise,
            "reason": self.reason,
        }


def check_models(
    pairs: Iterable[ForecastPair], *, mdpe_bound: float, mdape_bound: float
) -> list[ModelCheck]:
    """MDPE and MDAPE with intervals, and the drift and imprecision flags, per model version."""
    groups: dict[tuple[str, str], list[float]] = {}
    for p in pairs:
        groups.setdefault((p.model_id, p.model_version), []).append(p.prediction_error)
    out: list[ModelCheck] = []
    for (model_id, version), pe in sorted(groups.items()):
        mdpe = float(np.median(pe))
        ape = [abs(x) for x in pe]
        mdape = float(np.median(ape))
        mdpe_ci = median_interval(pe)
        drift = (
            abs(mdpe) > mdpe_bound and mdpe_ci is not None and not mdpe_ci[0] <= 0.0 <= mdpe_ci[1]
        )
        imprecise = mdape > mdape_bound
        if mdpe_ci is None:
            reason = f"{len(pe)} pairs: too few for an interval (6 needed); no drift call"
        elif drift:
            reason = (
                f"drift: MDPE {100 * mdpe:+.1f}% is beyond +/-{100 * mdpe_bound:.0f}% and its "
                f"95% interval ({100 * mdpe_ci[0]:+.1f}% to {100 * mdpe_ci[1]:+.1f}%) excludes 0"
            )
        else:
            reason = f"no drift: MDPE {100 * mdpe:+.1f}% (bound +/-{100 * mdpe_bound:.0f}%)"
        if imprecise:
            reason += f"; imprecise: MDAPE {100 * mdape:.1f}% > {100 * mdape_bound:.0f}%"
        out.append(
            ModelCheck(
                model_id,
                version,
                len(pe),
                mdpe,
                mdpe_ci,
                mdape,
                median_interval(ape),
                drift,
                imprecise,
                reason,
            )
        )
    return out


def self_check(
    records: Iterable[StoredAuditRecord],
    archive: ModelArchive,
    *,
    mdpe_bound: float,
    mdape_bound: float,
) -> dict[str, Any]:
    """The self-check report: per model version, and every pair behind it."""
    pairs = forecast_pairs(records, archive)
    return {
        "bounds": {"mdpe": mdpe_bound, "mdape": mdape_bound},
        "models": [
            c.to_json() for c in check_models(pairs, mdpe_bound=mdpe_bound, mdape_bound=mdape_bound)
        ],
        "pairs": [p.to_json() for p in pairs],
    }


def self_check_of_log(
    log: Any, archive: ModelArchive, settings: Any, *, tenant: str | None = None
) -> dict[str, Any]:
    """The self-check over a whole audit log (one tenant's, or all)."""
    from cds_service.audit.log import AuditQuery

    records: Mapping[int, StoredAuditRecord] = {
        r.seq: r for r in log.query(AuditQuery(kind="hook", tenant=tenant, limit=0))
    }
    return self_check(
        (records[s] for s in sorted(records)),
        archive,
        mdpe_bound=settings.selfcheck_mdpe_bound,
        mdape_bound=settings.selfcheck_mdape_bound,
    )
