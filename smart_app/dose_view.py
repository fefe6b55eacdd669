"""The dose simulator's JSON: the PK twin (levels, fitted curve and band, the regimens to
consider) and a regimen's prediction, from ``recommend`` with the regimen as the draft,
exactly as the dosing card computes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from cds_service.services.vancomycin import is_vancomycin, simulator_for
from onnx_models.pk.models import MODELS
from smart_app.schema import ApiModel
from twin_engine.codes import QUANTITY_LOINC
from twin_engine.pk.curve import ConcentrationCurve, concentration_curve
from twin_engine.pk.errors import DosingError
from twin_engine.pk.recommend import DosingResult, recommend
from twin_engine.pk.regimen import DEFAULT_TARGET, RegimenPrediction
from twin_engine.pk.types import Regimen

#: The plot shows up to 4 days of history and 3 days ahead.
HISTORY_WINDOW = timedelta(hours=96)
FUTURE_WINDOW = timedelta(hours=72)


class RegimenShown(ApiModel):
    """A regimen and its prediction, formatted as the dosing card formats them."""

    dose_mg: float
    interval_h: float
    infusion_h: float
    loading_dose_mg: float | None
    describe: str
    auc24: float
    auc24_low: float
    auc24_high: float
    auc24_display: str
    interval_display: str
    pta: float
    pta_display: str
    p_above: float
    p_above_display: str
    peak_ss_mg_l: float | None
    trough_ss_mg_l: float | None
    peak_trough_display: str


class Curve(ApiModel):
    """Concentration (mg/L) over time: the median and the band."""

    t: list[str]
    median: list[float]
    low: list[float]
    high: list[float]


class PkModel(ApiModel):
    id: str
    name: str
    version: str


class CovariatesShown(ApiModel):
    weight_kg: float
    crcl_ml_min: float
    creatinine_mg_dl: float
    age: float
    sex: str
    dialysis: bool | None


class ParametersShown(ApiModel):
    cl_l_h: float
    vc_l: float
    q_l_h: float
    vp_l: float


class DoseShown(ApiModel):
    t: str
    duration_h: float
    amount_mg: float


class LevelShown(ApiModel):
    t: str
    observed: float
    fitted: float
    kind: str
    source: str


class VancomycinUnavailable(ApiModel):
    """``GET /app/api/vancomycin`` when no dose can be computed: the reason."""

    model: PkModel
    as_of: str
    target: list[float]
    available: Literal[False]
    reason: str


class VancomycinPanel(ApiModel):
    """``GET /app/api/vancomycin``: the PK twin and the regimens to consider."""

    model: PkModel
    as_of: str
    target: list[float]
    available: Literal[True]
    reason: None
    covariates: CovariatesShown
    parameters: ParametersShown
    doses: list[DoseShown]
    levels: list[LevelShown]
    fitted_curve: Curve
    current_regimen: RegimenShown | None
    recommended: list[RegimenShown]
    notes: list[str]


class Simulation(ApiModel):
    """``POST /app/api/vancomycin/simulate``."""

    regimen: RegimenShown
    curve: Curve
    as_of: str
    target: list[float]


def _regimen_view(p: RegimenPrediction) -> RegimenShown:
    r = p.regimen
    return RegimenShown(
        dose_mg=r.dose_mg,
        interval_h=r.interval_h,
        infusion_h=r.infusion_h,
        loading_dose_mg=r.loading_dose_mg,
        describe=r.describe(),
        auc24=p.auc24_ss_mg_h_l,
        auc24_low=p.auc24_ss_low,
        auc24_high=p.auc24_ss_high,
        # Formatted as the dosing card formats them.
        auc24_display=f"{p.auc24_ss_mg_h_l:.0f}",
        interval_display=f"{p.auc24_ss_low:.0f}-{p.auc24_ss_high:.0f}",
        pta=p.probability_in_target,
        pta_display=f"{100 * p.probability_in_target:.0f}%",
        p_above=p.probability_above_target,
        p_above_display=f"{100 * p.probability_above_target:.0f}%",
        peak_ss_mg_l=p.peak_ss_mg_l,
        trough_ss_mg_l=p.trough_ss_mg_l,
        peak_trough_display="-"
        if p.peak_ss_mg_l is None or p.trough_ss_mg_l is None
        else f"{p.peak_ss_mg_l:.0f} / {p.trough_ss_mg_l:.1f}",
    )


def _curve(c: ConcentrationCurve) -> Curve:
    return Curve(
        t=[t.isoformat() for t in c.times],
        median=[round(x, 3) for x in c.median],
        low=[round(x, 3) for x in c.low],
        high=[round(x, 3) for x in c.high],
    )


def _window(result: DosingResult) -> tuple[datetime, datetime]:
    assert result.timeline is not None  # noqa: S101 - recommend() always returns its fit
    origin = result.timeline.origin
    start = max(origin, result.as_of - HISTORY_WINDOW) if origin < result.as_of else result.as_of
    if start >= result.as_of:
        start = result.as_of - timedelta(hours=12)
    return start, result.as_of + FUTURE_WINDOW


def _has_vancomycin(resources: Sequence[Mapping[str, Any]]) -> bool:
    for res in resources:
        kind = res.get("resourceType")
        if kind in ("MedicationAdministration", "MedicationRequest") and is_vancomycin(dict(res)):
            return True
        if kind == "Observation":
            codes = {
                c.get("code")
                for c in (res.get("code") or {}).get("coding", [])
                if isinstance(c, dict)
            }
            if codes & set(QUANTITY_LOINC["vancomycin"]):
                return True
    return False


def _dose(
    resources: Sequence[Mapping[str, Any]],
    as_of: datetime,
    model_id: str,
    regimen: Regimen | None,
) -> DosingResult:
    return recommend(
        resources,
        as_of=as_of,
        model=MODELS[model_id],
        simulator=simulator_for(model_id),
        draft_regimen=regimen,
    )


def vancomycin_view(
    resources: Sequence[Mapping[str, Any]], as_of: datetime, model_id: str
) -> VancomycinPanel | VancomycinUnavailable:
    """The PK twin: levels with the fitted curve and band, and the regimens to consider."""
    model = MODELS[model_id]
    shown = PkModel(id=model.id, name=model.name, version=model.version)
    target = list(DEFAULT_TARGET)
    if not _has_vancomycin(resources):
        return VancomycinUnavailable(
            model=shown,
            as_of=as_of.isoformat(),
            target=target,
            available=False,
            reason="no vancomycin doses or levels on record",
        )
    try:
        result = _dose(resources, as_of, model_id, None)
    except DosingError as exc:
        return VancomycinUnavailable(
            model=shown, as_of=as_of.isoformat(), target=target, available=False, reason=str(exc)
        )
    assert result.timeline is not None and result.posterior is not None  # noqa: S101
    start, _ = _window(result)
    history = concentration_curve(
        simulator_for(model_id), result.timeline, result.posterior, start=start, end=as_of
    )
    t = result.timeline
    cov, ip = result.covariates, result.individual_parameters
    return VancomycinPanel(
        model=shown,
        as_of=as_of.isoformat(),
        target=target,
        available=True,
        reason=None,
        covariates=CovariatesShown(
            weight_kg=cov.weight_kg,
            crcl_ml_min=round(cov.crcl_ml_min, 1),
            creatinine_mg_dl=cov.creatinine_mg_dl,
            age=round(cov.age, 1),
            sex=cov.sex,
            dialysis=cov.dialysis,
        ),
        parameters=ParametersShown(
            cl_l_h=round(ip.cl_l_h, 3),
            vc_l=round(ip.vc_l, 2),
            q_l_h=round(ip.q_l_h, 3),
            vp_l=round(ip.vp_l, 2),
        ),
        doses=[
            DoseShown(
                t=(t.origin + timedelta(hours=float(row[0]))).isoformat(),
                duration_h=float(row[1]),
                amount_mg=float(row[2]),
            )
            for row in t.doses
        ],
        levels=[
            LevelShown(
                t=lv.time.isoformat(),
                observed=lv.observed_mg_l,
                fitted=round(lv.predicted_mg_l, 2),
                kind=lv.kind,
                source=lv.source,
            )
            for lv in result.levels
        ],
        fitted_curve=_curve(history),
        current_regimen=_regimen_view(result.current_regimen) if result.current_regimen else None,
        recommended=[_regimen_view(p) for p in result.recommendations],
        notes=list(result.notes),
    )


def simulate(
    resources: Sequence[Mapping[str, Any]], as_of: datetime, model_id: str, regimen: Regimen
) -> Simulation:
    """The regimen's AUC24, interval and attainment (the card's numbers for it) and curve."""
    result = _dose(resources, as_of, model_id, regimen)
    assert result.current_regimen is not None  # noqa: S101 - a draft is always predicted
    assert result.timeline is not None and result.posterior is not None  # noqa: S101
    start, end = _window(result)
    curve = concentration_curve(
        simulator_for(model_id),
        result.timeline,
        result.posterior,
        start=start,
        end=end,
        regimen=regimen,
        regimen_start=as_of,
    )
    return Simulation(
        regimen=_regimen_view(result.current_regimen),
        curve=_curve(curve),
        as_of=as_of.isoformat(),
        target=list(result.target_auc),
    )
