"""The risk panel's and the what-if's JSON, built by the code the cards are built by.

The risk panel runs the very assessments the services run (``patient_view`` on the twin
and its features) and formats numbers with the cards' own functions (``pct``,
``shown_value``), so the app and the card cannot disagree for the same twin version and
day. The what-if uses the cards' treatment effects (``twin_engine.therapy``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from cds_service.pipeline.patient_view import patient_view
from cds_service.pipeline.predict import Assessment
from cds_service.pipeline.render import label, output_label, pct, shown_value
from cds_service.services.cardio_renal import SBP_TARGET_MM_HG, CardioRenalAssessments
from cds_service.services.catalog import ASCVD_RISK, CARDIO_RENAL_RISK
from onnx_models.registry import ModelRegistry
from smart_app.errors import WhatIfRefused
from smart_app.schema import ApiModel
from twin_engine.derive import FeatureSet
from twin_engine.therapy import StatinIntensity, TherapyError, apply_therapy
from twin_engine.twin import Twin

StatinChoice = Literal["none", "moderate", "high"]


class Factor(ApiModel):
    """One bar of the waterfall: an input's Shapley contribution."""

    name: str
    label: str
    value_display: str
    baseline_display: str
    contribution: float
    contribution_display: str
    date: str | None


class Waterfall(ApiModel):
    output: str
    label: str
    baseline: float
    baseline_display: str
    baseline_description: str
    final: float
    final_display: str
    factors: list[Factor]


class Output(ApiModel):
    name: str
    label: str
    value: float
    display: str


class InputShown(ApiModel):
    label: str
    value_display: str
    date: str | None
    source: str
    quality: str


class InputMissing(ApiModel):
    label: str
    quality: str
    reason: str


class ModelView(ApiModel):
    id: str
    name: str
    version: str
    sha256: str
    service: str
    status: str
    problems: list[str]
    outputs: list[Output]
    waterfall: Waterfall | None
    inputs: list[InputShown]
    missing: list[InputMissing]
    evidence: str


class RiskPanel(ApiModel):
    """``GET /app/api/risk``."""

    twin_version: int
    as_of: str
    models: list[ModelView]


class _WhatIfStart(ApiModel):
    base_label: str
    on_statin: bool
    ldl_display: str
    sbp_display: str
    statin_options: list[StatinChoice]
    sbp_targets: list[float | None]


class WhatIfUnavailable(_WhatIfStart):
    """``GET /app/api/whatif`` when PREVENT was not computed: the reason."""

    available: Literal[False]
    reason: str
    base_display: None


class WhatIfOptions(_WhatIfStart):
    """``GET /app/api/whatif``: the risk the what-if starts from."""

    available: Literal[True]
    reason: None
    base_risk: float
    base_display: str


class WhatIfResult(ApiModel):
    """``POST /app/api/whatif``."""

    risk_before: float
    risk_after: float
    display_before: str
    display_after: str
    absolute_risk_reduction: float
    arr_display: str
    relative_risk: float
    description: str
    evidence: str


def _date(t: datetime | None) -> str | None:
    return t.date().isoformat() if t else None


def _points(x: float) -> str:
    return f"{'+' if x >= 0 else '-'}{abs(100 * x):.1f} points"


def model_view(a: Assessment, service_id: str, output: str | None = None) -> ModelView:
    """One model's result as the panel draws it; ``output`` picks the waterfall's output."""
    card = a.model.card
    primary = output or card.outputs[0].name
    waterfall = None
    factors = a.factors_by_output.get(primary, ())
    if a.status == "computed" and factors:
        waterfall = Waterfall(
            output=primary,
            label=output_label(primary),
            baseline=a.baseline_outputs[primary],
            baseline_display=pct(a.baseline_outputs[primary]),
            baseline_description=card.baseline.description,
            final=a.outputs[primary],
            final_display=pct(a.outputs[primary]),
            factors=[
                Factor(
                    name=f.name,
                    label=label(f.name, f.description),
                    value_display=shown_value(f.name, f.value, f.unit),
                    baseline_display=shown_value(f.name, f.baseline_value, f.unit),
                    contribution=f.contribution,
                    contribution_display=_points(f.contribution),
                    date=_date(f.time) if f.name != "age_years" else None,
                )
                for f in factors
            ],
        )
    return ModelView(
        id=card.id,
        name=card.name,
        version=card.version,
        sha256=a.model.sha256,
        service=service_id,
        status=a.status,
        problems=list(a.problems),
        outputs=[
            Output(
                name=o.name,
                label=output_label(o.name),
                value=a.outputs[o.name],
                display=pct(a.outputs[o.name]),
            )
            for o in card.outputs
            if o.name in a.outputs
        ],
        waterfall=waterfall,
        inputs=[
            InputShown(
                label=label(i.name, i.description),
                value_display=shown_value(i.name, i.value, i.unit),
                date=_date(i.time),
                source=", ".join(i.sources[:2]),
                quality=i.quality,
            )
            for i in a.inputs
        ],
        missing=[
            InputMissing(label=label(n.name, n.description), quality=n.quality, reason=n.reason)
            for n in a.not_used
        ],
        evidence=card.source,
    )


def risk_assessments(
    registry: ModelRegistry, twin: Twin, features: FeatureSet, *, kfre_model: str
) -> CardioRenalAssessments:
    """The runs the patient-view cards show, from the same `patient_view` they are
    rendered from: PREVENT, the PCE the statin decision used, and KFRE where it applies."""
    view = patient_view(registry, twin, features, kfre_model=kfre_model)
    assert view.prevent is not None and view.prevent_30y is not None  # noqa: S101 (with_prevent)
    return CardioRenalAssessments(view.prevent, view.prevent_30y, view.pce, view.kfre)


def risk_view(runs: CardioRenalAssessments, twin_version: int, as_of: datetime) -> RiskPanel:
    models = [
        model_view(runs.prevent, CARDIO_RENAL_RISK.id, "risk_10y_cvd"),
        model_view(runs.pce, ASCVD_RISK.id),
    ]
    if runs.prevent_30y.status != "not-applicable":
        models.append(model_view(runs.prevent_30y, CARDIO_RENAL_RISK.id, "risk_30y_cvd"))
    if runs.kfre is not None:
        models.append(model_view(runs.kfre, CARDIO_RENAL_RISK.id, "risk_5y_kidney_failure"))
    return RiskPanel(twin_version=twin_version, as_of=as_of.date().isoformat(), models=models)


# --- what-if ---------------------------------------------------------------------------

#: SBP targets offered: 140 and 130 (2017 ACC/AHA guideline, section 8.1.5) and 120
#: (SPRINT, NEJM 2015;373:2103, intensive arm).
SBP_TARGETS: tuple[float | None, ...] = (None, 140.0, SBP_TARGET_MM_HG, 120.0)
THERAPY_EVIDENCE = "CTT, Lancet 2010; Ettehad, Lancet 2016"


def _with_date(text: str, t: datetime | None) -> str:
    return f"{text} ({t.date().isoformat()})" if t else text


def whatif_options(
    runs: CardioRenalAssessments, features: FeatureSet
) -> WhatIfOptions | WhatIfUnavailable:
    """What the what-if starts from: PREVENT 10-year ASCVD risk, as the card's lines do."""
    prevent = runs.prevent
    ldl = features.get("ldl_cholesterol_mg_dl")
    sbp = features.get("systolic_bp_mm_hg")
    start = _WhatIfStart(
        base_label="10-year ASCVD risk (PREVENT)",
        on_statin=features.get("statin").value == 1.0,
        ldl_display=_with_date(f"{ldl.value:.0f} mg/dL", ldl.time)
        if ldl.usable and ldl.value is not None
        else "not on record",
        sbp_display=_with_date(f"{sbp.value:.0f} mm[Hg]", sbp.time)
        if sbp.usable and sbp.value is not None
        else "not on record",
        statin_options=["none", "moderate", "high"],
        sbp_targets=list(SBP_TARGETS),
    ).model_dump()
    if prevent.status != "computed":
        reason = "; ".join(prevent.problems) or "PREVENT was not computed for this patient"
        return WhatIfUnavailable(**start, available=False, reason=reason, base_display=None)
    risk = prevent.outputs["risk_10y_ascvd"]
    return WhatIfOptions(
        **start, available=True, reason=None, base_risk=risk, base_display=pct(risk)
    )


def whatif(
    runs: CardioRenalAssessments,
    features: FeatureSet,
    statin: StatinChoice,
    sbp_target: float | None,
) -> WhatIfResult:
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
    return WhatIfResult(
        risk_before=before,
        risk_after=after,
        display_before=pct(before),
        display_after=pct(after),
        absolute_risk_reduction=before - after,
        arr_display=f"{100 * (before - after):.1f} points",
        relative_risk=rr,
        description=description,
        evidence=THERAPY_EVIDENCE,
    )
