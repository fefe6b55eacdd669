"""What the clinician app shows, as JSON: built by the same code the cards are built by.

The risk panel runs the very assessments the services run (``assess`` and
``patient_view`` on the twin and its features) and formats numbers with the
cards' own functions (``pct``, ``shown_value``), so the app and the card cannot
disagree for the same twin version and day. The what-if uses the cards' treatment
effects (``twin_engine.therapy``); the dose simulator calls ``recommend`` with the
regimen as the draft, exactly as the dosing card does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from cds_service.audit.log import ChainedAuditLog
from cds_service.pipeline.patient_view import patient_view
from cds_service.pipeline.predict import Assessment
from cds_service.pipeline.render import label, output_label, pct, shown_value
from cds_service.services.card_text import aki_words, ckd_words, statin_words
from cds_service.services.cardio_renal import SBP_TARGET_MM_HG, CardioRenalAssessments
from cds_service.services.catalog import ASCVD_RISK, CARDIO_RENAL_RISK
from cds_service.services.vancomycin import is_vancomycin, simulator_for
from onnx_models.pk.models import MODELS
from onnx_models.registry import ModelRegistry
from twin_engine.clinical.kidney import CKD_EGFR_BELOW, aki_episodes, egfr_series
from twin_engine.clinical.state import ClinicalState
from twin_engine.codes import QUANTITY_LOINC
from twin_engine.derive import FeatureSet
from twin_engine.pk.curve import ConcentrationCurve, concentration_curve
from twin_engine.pk.errors import DosingError
from twin_engine.pk.recommend import DosingResult, recommend
from twin_engine.pk.regimen import DEFAULT_TARGET, RegimenPrediction
from twin_engine.pk.types import Regimen
from twin_engine.therapy import StatinIntensity, TherapyError, apply_therapy
from twin_engine.twin import ObservationPoint, Twin
from twin_engine.units import canonical_unit


class WhatIfRefused(ValueError):
    """A what-if the patient's data cannot answer; the message says why."""


# --- patient banner --------------------------------------------------------------------


def _name(patient: Mapping[str, Any]) -> str:
    names = patient.get("name")
    for name in names if isinstance(names, list) else ():
        if not isinstance(name, dict):
            continue
        if isinstance(name.get("text"), str):
            return str(name["text"])
        given = [g for g in name.get("given", []) if isinstance(g, str)]
        family = name.get("family")
        text = " ".join([*given, family if isinstance(family, str) else ""]).strip()
        if text:
            return text
    return "Name not recorded"


def _identifier(patient: Mapping[str, Any]) -> str | None:
    identifiers = patient.get("identifier")
    found = [i for i in identifiers if isinstance(i, dict)] if isinstance(identifiers, list) else []
    for ident in found:
        codings = (ident.get("type") or {}).get("coding") or []
        if any(isinstance(c, dict) and c.get("code") == "MR" for c in codings):
            return f"MRN {ident.get('value')}"
    return None


def banner(patient: Mapping[str, Any] | None, twin: Twin, today: datetime) -> dict[str, Any]:
    birth = twin.demographics.birth_date
    age = None
    if birth is not None:
        d = today.date()
        age = d.year - birth.year - ((d.month, d.day) < (birth.month, birth.day))
    return {
        "id": twin.patient_id,
        "name": _name(patient or {}),
        "gender": twin.demographics.gender,
        "birth_date": birth.isoformat() if birth else None,
        "age_years": age,
        "identifier": _identifier(patient or {}),
    }


# --- timelines -------------------------------------------------------------------------

#: (chart id, title, [(series name, twin quantity)], reference line)
_CHARTS: tuple[tuple[str, str, tuple[tuple[str, str], ...], dict[str, Any] | None], ...] = (
    (
        "bp",
        "Blood pressure",
        (("Systolic", "systolic_bp"), ("Diastolic", "diastolic_bp")),
        {"low": None, "high": SBP_TARGET_MM_HG, "label": f"SBP target {SBP_TARGET_MM_HG:.0f}"},
    ),
    (
        "lipids",
        "Cholesterol",
        (("Total", "total_cholesterol"), ("HDL", "hdl_cholesterol"), ("LDL", "ldl_cholesterol")),
        None,
    ),
    (
        "egfr",
        "eGFR",
        (("eGFR", "egfr"),),
        {"low": CKD_EGFR_BELOW, "high": None, "label": "CKD G3 below 60"},
    ),
    ("creatinine", "Creatinine", (("Creatinine", "creatinine"),), None),
    ("vancomycin", "Vancomycin levels", (("Vancomycin", "vancomycin"),), None),
)


def _point(p: ObservationPoint) -> dict[str, Any]:
    return {"t": p.time.isoformat(), "v": p.value, "source": p.source, "quality": p.quality}


def _day(t: datetime | None) -> str:
    return t.date().isoformat() if t else "an unknown date"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _derived(twin: Twin, state: ClinicalState) -> dict[str, dict[str, Any]]:
    """Per chart: derived series, treatment bands and events from the clinical rules,
    worded as the cards word them (the same functions)."""
    instant = state.as_of
    egfr = [
        {"t": e.time.isoformat(), "v": round(e.value, 1), "source": e.source, "quality": "ok"}
        for e in egfr_series(twin, instant)
    ]
    kidney_bands = []
    k = state.kidney
    if k.abnormal_since is not None and k.egfr is not None:
        kidney_bands.append(
            {
                "start": k.abnormal_since.isoformat(),
                "end": k.egfr.time.isoformat(),
                "label": ckd_words(k),
                "kind": "ckd" if k.chronic else "not-chronic",
            }
        )
    return {
        "egfr": {
            "series": [{"name": "eGFR, CKD-EPI 2021 (as the cards use it)", "points": egfr}],
            "bands": kidney_bands,
            "events": [],
        },
        "creatinine": {
            "series": [],
            "bands": [],
            "events": [
                {
                    "t": a.time.isoformat(),
                    "label": f"AKI stage {a.stage}",
                    "text": f"Acute kidney injury, {aki_words(a)}",
                    "kind": "aki",
                }
                for a in aki_episodes(twin, instant)
            ],
        },
        "lipids": {
            "series": [],
            "bands": [
                {
                    "start": _iso(x.start),
                    "end": _iso(x.stop) if not x.ongoing else None,
                    "label": statin_words(x),
                    "kind": "statin",
                }
                for x in state.statins
                if x.start is not None
            ],
            "events": [],
        },
    }


def clinical_state_view(state: ClinicalState) -> list[dict[str, str]]:
    """The derived state the cards act on, one line each, in the cards' words."""
    rows: list[dict[str, str]] = []
    if state.aki is not None:
        rows.append({"label": "Acute kidney injury", "value": aki_words(state.aki)})
    k = state.kidney
    if k.g_category is not None and k.egfr is not None:
        since = (
            f", abnormal since {k.abnormal_since.date().isoformat()}" if k.abnormal_since else ""
        )
        rows.append(
            {
                "label": "Kidney function",
                "value": f"{ckd_words(k)}: eGFR {k.egfr.value:.0f} mL/min/1.73 m2 "
                f"({k.egfr.time.date().isoformat()}){since}",
            }
        )
    current = state.current_statin
    rows.append(
        {
            "label": "Statin",
            "value": f"{statin_words(current)} since {_day(current.start)}"
            if current
            else ("none now" if state.statins else "none on record"),
        }
    )
    if state.pretreatment_lipids is not None:
        p = state.pretreatment_lipids
        rows.append(
            {
                "label": "Lipids before the statin",
                "value": f"total {p.total_mg_dl:.0f}, HDL {p.hdl_mg_dl:.0f} mg/dL ({_day(p.time)})",
            }
        )
    for label_text, finding in (
        ("Clinical ASCVD", state.clinical_ascvd),
        ("Heart failure", state.heart_failure),
        ("Pregnancy", state.pregnancy),
        ("Kidney failure", state.kidney_failure),
    ):
        if finding is not None:
            when = finding.since.date().isoformat() if finding.since else "date not recorded"
            rows.append(
                {"label": label_text, "value": f"{finding.what} ({when}, {finding.source})"}
            )
    return rows


def timelines(twin: Twin, state: ClinicalState | None = None) -> list[dict[str, Any]]:
    """One chart per clinical quantity group, in the twin's canonical units, with the
    derived clinical state drawn on it (eGFR as the cards compute it, AKI episodes,
    CKD stage, statin periods) when `state` is given.

    A value in an unknown unit is not drawn: on an axis in another unit it would be a
    wrong number. The twin's issues list names it instead.
    """
    derived = _derived(twin, state) if state is not None else {}
    charts = []
    for chart_id, title, series, reference in _CHARTS:
        quantity = series[0][1]
        charts.append(
            {
                "id": chart_id,
                "title": title,
                "unit": canonical_unit(quantity),  # type: ignore[arg-type]
                "series": [
                    {
                        "name": name,
                        "points": [
                            _point(p)
                            for p in twin.observations.get(q, ())
                            if p.value is not None and p.quality != "unit_unknown"
                        ],
                    }
                    for name, q in series
                ]
                + derived.get(chart_id, {}).get("series", []),
                "reference": reference,
                "bands": derived.get(chart_id, {}).get("bands", []),
                "events": derived.get(chart_id, {}).get("events", []),
            }
        )
    return charts


def issues(twin: Twin) -> list[str]:
    out = [f"{i.resource_type}/{i.resource_id or '?'}: {i.reason}" for i in twin.issues]
    for points in twin.observations.values():
        out += [
            f"{p.source}: unit {p.unit!r} unknown; value not used"
            for p in points
            if p.quality == "unit_unknown"
        ]
    return out[:50]


# --- risk ------------------------------------------------------------------------------


def _date(t: datetime | None) -> str | None:
    return t.date().isoformat() if t else None


def _points(x: float) -> str:
    return f"{'+' if x >= 0 else '-'}{abs(100 * x):.1f} points"


def model_view(a: Assessment, service_id: str, output: str | None = None) -> dict[str, Any]:
    """One model's result as the panel draws it; ``output`` picks the waterfall's output."""
    card = a.model.card
    primary = output or card.outputs[0].name
    waterfall = None
    factors = a.factors_by_output.get(primary, ())
    if a.status == "computed" and factors:
        waterfall = {
            "output": primary,
            "label": output_label(primary),
            "baseline": a.baseline_outputs[primary],
            "baseline_display": pct(a.baseline_outputs[primary]),
            "baseline_description": card.baseline.description,
            "final": a.outputs[primary],
            "final_display": pct(a.outputs[primary]),
            "factors": [
                {
                    "name": f.name,
                    "label": label(f.name, f.description),
                    "value_display": shown_value(f.name, f.value, f.unit),
                    "baseline_display": shown_value(f.name, f.baseline_value, f.unit),
                    "contribution": f.contribution,
                    "contribution_display": _points(f.contribution),
                    "date": _date(f.time) if f.name != "age_years" else None,
                }
                for f in factors
            ],
        }
    return {
        "id": card.id,
        "name": card.name,
        "version": card.version,
        "sha256": a.model.sha256,
        "service": service_id,
        "status": a.status,
        "problems": list(a.problems),
        "outputs": [
            {
                "name": o.name,
                "label": output_label(o.name),
                "value": a.outputs[o.name],
                "display": pct(a.outputs[o.name]),
            }
            for o in card.outputs
            if o.name in a.outputs
        ],
        "waterfall": waterfall,
        "inputs": [
            {
                "label": label(i.name, i.description),
                "value_display": shown_value(i.name, i.value, i.unit),
                "date": _date(i.time),
                "source": ", ".join(i.sources[:2]),
                "quality": i.quality,
            }
            for i in a.inputs
        ],
        "missing": [
            {"label": label(n.name, n.description), "quality": n.quality, "reason": n.reason}
            for n in a.not_used
        ],
        "evidence": card.source,
    }


def risk_assessments(
    registry: ModelRegistry, twin: Twin, features: FeatureSet, *, kfre_model: str
) -> CardioRenalAssessments:
    """The runs the patient-view cards show, from the same `patient_view` they are
    rendered from: PREVENT, the PCE the statin decision used, and KFRE where it applies."""
    view = patient_view(registry, twin, features, kfre_model=kfre_model)
    assert view.prevent is not None and view.prevent_30y is not None  # noqa: S101 (with_prevent)
    return CardioRenalAssessments(view.prevent, view.prevent_30y, view.pce, view.kfre)


def risk_view(runs: CardioRenalAssessments, twin_version: int, as_of: datetime) -> dict[str, Any]:
    models = [
        model_view(runs.prevent, CARDIO_RENAL_RISK.id, "risk_10y_cvd"),
        model_view(runs.pce, ASCVD_RISK.id),
    ]
    if runs.prevent_30y.status != "not-applicable":
        models.append(model_view(runs.prevent_30y, CARDIO_RENAL_RISK.id, "risk_30y_cvd"))
    if runs.kfre is not None:
        models.append(model_view(runs.kfre, CARDIO_RENAL_RISK.id, "risk_5y_kidney_failure"))
    return {"twin_version": twin_version, "as_of": as_of.date().isoformat(), "models": models}


# --- what-if ---------------------------------------------------------------------------

StatinChoice = Literal["none", "moderate", "high"]
#: SBP targets offered: 140 and 130 (2017 ACC/AHA guideline, section 8.1.5) and 120
#: (SPRINT, NEJM 2015;373:2103, intensive arm).
SBP_TARGETS: tuple[float | None, ...] = (None, 140.0, SBP_TARGET_MM_HG, 120.0)
THERAPY_EVIDENCE = "CTT, Lancet 2010; Ettehad, Lancet 2016"


def _with_date(text: str, t: datetime | None) -> str:
    return f"{text} ({t.date().isoformat()})" if t else text


def whatif_options(runs: CardioRenalAssessments, features: FeatureSet) -> dict[str, Any]:
    """What the what-if starts from: PREVENT 10-year ASCVD risk, as the card's lines do."""
    prevent = runs.prevent
    ldl = features.get("ldl_cholesterol_mg_dl")
    sbp = features.get("systolic_bp_mm_hg")
    base: dict[str, Any] = {
        "base_label": "10-year ASCVD risk (PREVENT)",
        "on_statin": features.get("statin").value == 1.0,
        "ldl_display": _with_date(f"{ldl.value:.0f} mg/dL", ldl.time)
        if ldl.usable and ldl.value is not None
        else "not on record",
        "sbp_display": _with_date(f"{sbp.value:.0f} mm[Hg]", sbp.time)
        if sbp.usable and sbp.value is not None
        else "not on record",
        "statin_options": ["none", "moderate", "high"],
        "sbp_targets": list(SBP_TARGETS),
    }
    if prevent.status != "computed":
        reason = "; ".join(prevent.problems) or "PREVENT was not computed for this patient"
        return {**base, "available": False, "reason": reason, "base_display": None}
    risk = prevent.outputs["risk_10y_ascvd"]
    return {
        **base,
        "available": True,
        "reason": None,
        "base_risk": risk,
        "base_display": pct(risk),
    }


def whatif(
    runs: CardioRenalAssessments,
    features: FeatureSet,
    statin: StatinChoice,
    sbp_target: float | None,
) -> dict[str, Any]:
    """Risk under the chosen therapy, with the card's effect sizes and formatting."""
    if runs.prevent.status != "computed":
        raise WhatIfRefused("PREVENT was not computed for this patient")
    risk = runs.prevent.outputs["risk_10y_ascvd"]
    ldl = features.get("ldl_cholesterol_mg_dl")
    sbp = features.get("systolic_bp_mm_hg")
    intensity: StatinIntensity | None = None if statin == "none" else statin
    if intensity is not None and features.get("statin").value == 1.0:
        raise WhatIfRefused("the patient is already on a statin; its effect is in the risk")
    if intensity is not None and not (ldl.usable and ldl.value is not None):
        raise WhatIfRefused("a statin what-if needs the patient's LDL cholesterol")
    if sbp_target is not None and not (sbp.usable and sbp.value is not None):
        raise WhatIfRefused("a blood-pressure what-if needs the patient's systolic BP")
    if intensity is None and sbp_target is None:
        before = after = risk
        rr, description = 1.0, "no change"
    else:
        try:
            effect = apply_therapy(
                risk,
                ldl_mg_dl=ldl.value if intensity is not None else None,
                statin=intensity,
                sbp_mm_hg=sbp.value if sbp_target is not None else None,
                sbp_target_mm_hg=sbp_target,
            )
        except TherapyError as exc:
            raise WhatIfRefused(str(exc)) from exc
        before, after, rr, description = (
            effect.risk_before,
            effect.risk_after,
            effect.relative_risk,
            effect.description,
        )
        if sbp_target is not None and sbp.value is not None and sbp.value <= sbp_target:
            description += f" (already at or below: SBP {sbp.value:.0f})"
    return {
        "risk_before": before,
        "risk_after": after,
        "display_before": pct(before),
        "display_after": pct(after),
        "absolute_risk_reduction": before - after,
        "arr_display": f"{100 * (before - after):.1f} points",
        "relative_risk": rr,
        "description": description,
        "evidence": THERAPY_EVIDENCE,
    }


# --- vancomycin ------------------------------------------------------------------------

#: The plot shows up to 4 days of history and 3 days ahead.
HISTORY_WINDOW = timedelta(hours=96)
FUTURE_WINDOW = timedelta(hours=72)


def _regimen_view(p: RegimenPrediction) -> dict[str, Any]:
    r = p.regimen
    return {
        "dose_mg": r.dose_mg,
        "interval_h": r.interval_h,
        "infusion_h": r.infusion_h,
        "loading_dose_mg": r.loading_dose_mg,
        "describe": r.describe(),
        "auc24": p.auc24_ss_mg_h_l,
        "auc24_low": p.auc24_ss_low,
        "auc24_high": p.auc24_ss_high,
        # Formatted as the dosing card formats them.
        "auc24_display": f"{p.auc24_ss_mg_h_l:.0f}",
        "interval_display": f"{p.auc24_ss_low:.0f}-{p.auc24_ss_high:.0f}",
        "pta": p.probability_in_target,
        "pta_display": f"{100 * p.probability_in_target:.0f}%",
        "p_above": p.probability_above_target,
        "p_above_display": f"{100 * p.probability_above_target:.0f}%",
        "peak_ss_mg_l": p.peak_ss_mg_l,
        "trough_ss_mg_l": p.trough_ss_mg_l,
        "peak_trough_display": "-"
        if p.peak_ss_mg_l is None or p.trough_ss_mg_l is None
        else f"{p.peak_ss_mg_l:.0f} / {p.trough_ss_mg_l:.1f}",
    }


def _curve(c: ConcentrationCurve) -> dict[str, Any]:
    return {
        "t": [t.isoformat() for t in c.times],
        "median": [round(x, 3) for x in c.median],
        "low": [round(x, 3) for x in c.low],
        "high": [round(x, 3) for x in c.high],
    }


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
) -> dict[str, Any]:
    """The PK twin: levels with the fitted curve and band, and the regimens to consider."""
    model = MODELS[model_id]
    head: dict[str, Any] = {
        "model": {"id": model.id, "name": model.name, "version": model.version},
        "as_of": as_of.isoformat(),
        "target": list(DEFAULT_TARGET),
    }
    if not _has_vancomycin(resources):
        return {**head, "available": False, "reason": "no vancomycin doses or levels on record"}
    try:
        result = _dose(resources, as_of, model_id, None)
    except DosingError as exc:
        return {**head, "available": False, "reason": str(exc)}
    assert result.timeline is not None and result.posterior is not None  # noqa: S101
    start, _ = _window(result)
    history = concentration_curve(
        simulator_for(model_id), result.timeline, result.posterior, start=start, end=as_of
    )
    t = result.timeline
    cov, ip = result.covariates, result.individual_parameters
    return {
        **head,
        "available": True,
        "reason": None,
        "covariates": {
            "weight_kg": cov.weight_kg,
            "crcl_ml_min": round(cov.crcl_ml_min, 1),
            "creatinine_mg_dl": cov.creatinine_mg_dl,
            "age": round(cov.age, 1),
            "sex": cov.sex,
            "dialysis": cov.dialysis,
        },
        "parameters": {
            "cl_l_h": round(ip.cl_l_h, 3),
            "vc_l": round(ip.vc_l, 2),
            "q_l_h": round(ip.q_l_h, 3),
            "vp_l": round(ip.vp_l, 2),
        },
        "doses": [
            {
                "t": (t.origin + timedelta(hours=float(row[0]))).isoformat(),
                "duration_h": float(row[1]),
                "amount_mg": float(row[2]),
            }
            for row in t.doses
        ],
        "levels": [
            {
                "t": lv.time.isoformat(),
                "observed": lv.observed_mg_l,
                "fitted": round(lv.predicted_mg_l, 2),
                "kind": lv.kind,
                "source": lv.source,
            }
            for lv in result.levels
        ],
        "fitted_curve": _curve(history),
        "current_regimen": _regimen_view(result.current_regimen)
        if result.current_regimen
        else None,
        "recommended": [_regimen_view(p) for p in result.recommendations],
        "notes": list(result.notes),
    }


def simulate(
    resources: Sequence[Mapping[str, Any]], as_of: datetime, model_id: str, regimen: Regimen
) -> dict[str, Any]:
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
    return {
        "regimen": _regimen_view(result.current_regimen),
        "curve": _curve(curve),
        "as_of": as_of.isoformat(),
        "target": list(result.target_auc),
    }


# --- recommendation history ------------------------------------------------------------


def _feedback_view(f: Mapping[str, Any]) -> dict[str, Any]:
    reason = f.get("overrideReason") or {}
    coding = reason.get("reason") if isinstance(reason, dict) else None
    accepted = f.get("acceptedSuggestions") or []
    return {
        "outcome": f.get("outcome"),
        "time": f.get("outcomeTimestamp"),
        "override_reason": {"code": coding.get("code"), "display": coding.get("display")}
        if isinstance(coding, dict)
        else None,
        "accepted_suggestions": [a.get("id") for a in accepted if isinstance(a, dict)],
    }


def history(
    audit: ChainedAuditLog, patient_id: str, scope: str | None, limit: int = 50
) -> dict[str, Any]:
    """This patient's recommendations in this EHR (tenant), newest first, with responses."""
    records = []
    for rec in reversed(audit.records(patient_id=patient_id)):
        body = rec.body
        client = body.get("client") or {}
        # Patient ids are unique only within one EHR: show only this EHR's records.
        if (client.get("tenant") or client.get("iss")) != scope:
            continue
        cards = [
            {
                "uuid": c.get("uuid"),
                "summary": c.get("summary"),
                "indicator": c.get("indicator"),
                "feedback": [_feedback_view(f) for f in audit.feedback_for(str(c.get("uuid")))],
            }
            for c in body.get("cards") or []
            if isinstance(c, dict)
        ]
        model = body.get("model")
        twin = body.get("twin") or {}
        records.append(
            {
                "seq": rec.seq,
                "time": rec.recorded_at,
                "service": body.get("service"),
                "hook": body.get("hook"),
                "status": body.get("status"),
                "model": {"id": model.get("id"), "version": model.get("version")}
                if isinstance(model, dict)
                else None,
                "twin_version": twin.get("version"),
                "cards": cards,
            }
        )
        if len(records) >= limit:
            break
    return {"records": records}
