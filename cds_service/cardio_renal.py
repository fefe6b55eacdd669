"""The cardio-renal-risk service: PREVENT (with PCE beside it), KFRE, and what to order.

- PREVENT (Khan et al., Circulation 2024) 10- and 30-year CVD, ASCVD and heart
  failure risk, with the PCE shown beside it where both apply and the difference
  explained in one sentence.
- KFRE 4-variable (Tangri et al., JAMA 2011/2016) when eGFR < 60 or ACR >= 30 mg/g.
- When a laboratory input is missing or stale, no number: a suggestion to order it
  (a ``create`` action carrying a draft ServiceRequest).
- Treatment response on the same twin: absolute risk reduction under a statin and an
  SBP target (twin_engine.therapy, from CTT 2010 and Ettehad 2016).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cds_service.assess import Assessment, assess
from cds_service.cards import Action, Card, Indicator, Link, Suggestion
from cds_service.render import (
    OVERRIDE_REASONS,
    factor_lines,
    input_rows,
    label,
    missing_section,
    model_section,
    model_source,
    pct,
)
from cds_service.services import LOINC
from onnx_models.registry import ModelRegistry
from twin_engine.derive import FeatureSet
from twin_engine.therapy import TherapyEffect, apply_therapy

#: What to order when a laboratory input is missing or stale: (LOINC, display).
ORDERABLE: dict[str, tuple[str, str]] = {
    "total_cholesterol_mg_dl": ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
    "hdl_cholesterol_mg_dl": ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
    "egfr_ml_min_1_73m2": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
    "uacr_mg_g": ("14959-1", "Microalbumin/Creatinine [Mass ratio] in Urine"),
}

#: KFRE was derived in CKD G3-G5 (eGFR < 60, Tangri 2011); albuminuria >= 30 mg/g (A2)
#: is CKD too (KDIGO 2024, Kidney Int 2024;105(4S):S117, chapter 1), so it triggers the
#: check, and an eGFR >= 60 then puts the patient outside the KFRE's population.
KFRE_EGFR_BELOW = 60.0
KFRE_ACR_AT_LEAST_MG_G = 30.0

#: KDIGO 2024 CKD guideline, chapter 2, Recommendation 2.2.1 and Practice Points
#: 2.2.1-2.2.3: a 5-year KFRE of 3%-5% can decide nephrology referral (we use the upper
#: end, 5%); a 2-year risk > 10% multidisciplinary care; > 40% planning for kidney
#: replacement therapy.
KFRE_REFERRAL_5Y = 0.05
KFRE_MULTIDISCIPLINARY_2Y = 0.10
KFRE_KRT_PREPARATION_2Y = 0.40

#: Blood-pressure target for the what-if: SBP < 130 mm Hg (2017 ACC/AHA high blood
#: pressure guideline, Whelton et al., Hypertension 2018;71:e13, section 8.1.5).
SBP_TARGET_MM_HG = 130.0

PCE_VS_PREVENT = (
    "PCE and PREVENT differ: PREVENT was derived in contemporary US cohorts without race, "
    "adds kidney function and statin use, and on average estimates about half the PCE's "
    "10-year ASCVD risk (Khan et al., Circulation 2024)."
)


@dataclass(frozen=True, slots=True)
class CardioRenalResult:
    cards: tuple[Card, ...]
    assessments: tuple[Assessment, ...]


def _why_not(a: Assessment, labs: tuple[str, ...]) -> str:
    """'missing X, Y; stale Z' in clinicians' words, or the range problem."""
    if a.status == "out-of-range":
        return "; ".join(a.problems)
    missing = [label(n.name, n.description) for n in a.not_used]
    stale = [label(i.name, i.description) for i in a.stale if i.name in labs]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if stale:
        parts.append("stale " + ", ".join(stale))
    return "; ".join(parts) or "; ".join(a.problems)


def _lab_blockers(a: Assessment, names: tuple[str, ...]) -> tuple[str, ...]:
    """Laboratory inputs that are missing, unusable or stale: order them, no number."""
    blocked = {n.name for n in a.not_used if n.name in names}
    blocked |= {i.name for i in a.stale if i.name in names}
    return tuple(n for n in names if n in blocked)


def order_suggestion(patient_id: str, inputs: tuple[str, ...], why: str) -> Suggestion:
    actions: list[Action] = []
    seen: set[str] = set()
    for name in inputs:
        code, display = ORDERABLE[name]
        if code in seen:
            continue
        seen.add(code)
        actions.append(
            Action(
                type="create",
                description=f"Order {display}",
                resource={
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "proposal",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://snomed.info/sct",
                                    "code": "108252007",
                                    "display": "Laboratory procedure",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "reasonCode": [{"text": why}],
                },
            )
        )
    labels = " and ".join(a.description.removeprefix("Order ") for a in actions)
    return Suggestion(
        label=f"Order {labels}"[:200], uuid=str(uuid.uuid4()), isRecommended=True, actions=actions
    )


def what_ifs(features: FeatureSet, risk: float) -> list[TherapyEffect]:
    effects: list[TherapyEffect] = []
    ldl = features.get("ldl_cholesterol_mg_dl")
    sbp = features.get("systolic_bp_mm_hg")
    on_statin = features.get("statin").value == 1.0
    if not on_statin and ldl.usable and ldl.value is not None:
        for intensity in ("moderate", "high"):
            effects.append(apply_therapy(risk, ldl_mg_dl=ldl.value, statin=intensity))
    if sbp.usable and sbp.value is not None and sbp.value > SBP_TARGET_MM_HG:
        effects.append(apply_therapy(risk, sbp_mm_hg=sbp.value, sbp_target_mm_hg=SBP_TARGET_MM_HG))
    return effects


def _therapy_lines(effects: list[TherapyEffect]) -> list[str]:
    if not effects:
        return []
    lines = [
        "**Treatment response** (10-year ASCVD risk; trial-average effects applied to this "
        "patient: CTT, Lancet 2010; Ettehad, Lancet 2016)"
    ]
    for e in effects:
        lines.append(
            f"- {e.description}: {pct(e.risk_before)} → {pct(e.risk_after)} "
            f"(absolute risk reduction {100 * e.absolute_risk_reduction:.1f} points)"
        )
    return lines


@dataclass(frozen=True, slots=True)
class CardioRenalAssessments:
    """The model runs behind the cardio-renal cards (and the app's risk panel)."""

    prevent: Assessment
    prevent_30y: Assessment
    pce: Assessment
    #: Run only where KFRE's population is reached (CKD by eGFR or albuminuria).
    kfre: Assessment | None

    def all(self) -> tuple[Assessment, ...]:
        runs = (self.prevent, self.prevent_30y, self.pce)
        return runs + ((self.kfre,) if self.kfre is not None else ())


def cardio_renal_assessments(
    registry: ModelRegistry,
    features: FeatureSet,
    *,
    deceased: bool,
    kfre_model: str = "kfre",
    excluded_by: tuple[str, ...] = ("clinical_ascvd",),
) -> CardioRenalAssessments:
    """PREVENT 10- and 30-year, PCE, and KFRE where it applies, on one twin's features.

    ``kfre_model`` is the deployment's calibration: ``kfre`` (North America, Tangri 2011)
    or ``kfre_non_na`` (recalibrated outside North America, Tangri 2016). ``excluded_by``
    (the service's) puts patients outside the primary-prevention models' population.
    """

    def run(model_id: str) -> Assessment:
        return assess(registry.get(model_id), features, excluded_by=excluded_by, deceased=deceased)

    # PREVENT publishes 30-year risk for ages 30-59 only: a second model with that range.
    prevent, prevent_30y, pce = run("prevent"), run("prevent_30y"), run("pce")
    egfr = features.get("egfr_ml_min_1_73m2")
    uacr = features.get("uacr_mg_g")
    ckd = (egfr.usable and egfr.value is not None and egfr.value < KFRE_EGFR_BELOW) or (
        uacr.usable and uacr.value is not None and uacr.value >= KFRE_ACR_AT_LEAST_MG_G
    )
    kfre = None
    if ckd and not deceased:
        # eGFR >= 60 with albuminuria is CKD, but outside the KFRE's derivation population.
        kfre = assess(
            registry.get(kfre_model),
            features,
            population_inputs=frozenset({"age_years", "egfr_ml_min_1_73m2"}),
        )
    return CardioRenalAssessments(prevent, prevent_30y, pce, kfre)


def cardio_renal_cards(
    registry: ModelRegistry,
    features: FeatureSet,
    *,
    patient_id: str,
    deceased: bool,
    link: Link,
    kfre_model: str = "kfre",
    excluded_by: tuple[str, ...] = ("clinical_ascvd",),
) -> CardioRenalResult:
    """Cards for one patient: PREVENT (+PCE), KFRE where it applies, and orders."""
    runs = cardio_renal_assessments(
        registry, features, deceased=deceased, kfre_model=kfre_model, excluded_by=excluded_by
    )
    cards: list[Card] = []
    cvd = _prevent_card(runs.prevent, runs.prevent_30y, runs.pce, features, patient_id, link)
    if cvd is not None:
        cards.append(cvd)
    if runs.kfre is not None:
        kidney = _kfre_card(runs.kfre, patient_id, link)
        if kidney is not None:
            cards.append(kidney)
    return CardioRenalResult(tuple(cards), runs.all())


def _not_computed_card(
    a: Assessment,
    what: str,
    purpose: str,
    labs: tuple[str, ...],
    patient_id: str,
    link: Link,
) -> Card:
    """No number: say what is missing or stale, and offer to order the labs."""
    orderable = tuple(n for n in _lab_blockers(a, labs) if n in ORDERABLE)
    suggestions = (
        [order_suggestion(patient_id, orderable, f"Inputs for {purpose}")] if orderable else None
    )
    return Card(
        uuid=str(uuid.uuid4()),
        summary=f"{what} not computed: {_why_not(a, labs)}"[:139],
        detail="\n".join(
            [
                f"A {purpose} from missing or stale inputs would not be the patient's.",
                "",
                *(f"- {p}" for p in a.problems),
                "",
                *missing_section(a),
                "",
                *model_section(a),
            ]
        ),
        indicator="info",
        source=model_source(a),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        links=[link],
    )


def _prevent_card(
    prevent: Assessment,
    prevent_30y: Assessment,
    pce: Assessment,
    features: FeatureSet,
    patient_id: str,
    link: Link,
) -> Card | None:
    if prevent.status == "not-applicable":
        return None
    labs = ("total_cholesterol_mg_dl", "hdl_cholesterol_mg_dl", "egfr_ml_min_1_73m2")
    blockers = _lab_blockers(prevent, labs)
    if blockers or prevent.status != "computed":
        return _not_computed_card(
            prevent, "Cardiovascular risk", "cardiovascular risk (PREVENT)", labs, patient_id, link
        )

    o = prevent.outputs
    o30 = prevent_30y.outputs if prevent_30y.status == "computed" else {}
    summary = (
        f"PREVENT 10-y CVD {pct(o['risk_10y_cvd'])} (ASCVD {pct(o['risk_10y_ascvd'])}, "
        f"HF {pct(o['risk_10y_hf'])})" + (f"; 30-y CVD {pct(o30['risk_30y_cvd'])}" if o30 else "")
    )
    thirty = (
        f"**30-year risk**: CVD {pct(o30['risk_30y_cvd'])}, ASCVD {pct(o30['risk_30y_ascvd'])}, "
        f"heart failure {pct(o30['risk_30y_hf'])}."
        if o30
        else "30-year risk: PREVENT publishes it for ages 30-59 only."
    )
    pce_lines: list[str] = []
    if pce.status == "computed":
        pce_lines = [
            f"**Pooled Cohort Equations** 10-year ASCVD: {pct(pce.outputs['risk_10y_ascvd'])}. "
            + PCE_VS_PREVENT
        ]
    elif pce.status != "not-applicable":
        pce_lines = ["Pooled Cohort Equations not shown: " + "; ".join(pce.problems)]
    effects = what_ifs(features, o["risk_10y_ascvd"])
    detail = [
        f"**PREVENT 10-year risk**: CVD {pct(o['risk_10y_cvd'])}, ASCVD "
        f"{pct(o['risk_10y_ascvd'])}, heart failure {pct(o['risk_10y_hf'])}.",
        thirty,
        "",
        *pce_lines,
        "",
        "**The patient's inputs**",
        *input_rows(prevent.inputs),
        "",
        *factor_lines(prevent, "risk_10y_cvd"),
        "",
        *_therapy_lines(effects),
        "",
        *missing_section(prevent),
        "",
        *model_section(prevent),
    ]
    return Card(
        uuid=str(uuid.uuid4()),
        summary=summary[:139],
        detail="\n".join(detail),
        indicator="warning" if o["risk_10y_cvd"] >= 0.075 else "info",
        source=model_source(prevent),
        overrideReasons=list(OVERRIDE_REASONS),
        links=[link],
    )


def _kfre_card(kfre: Assessment, patient_id: str, link: Link) -> Card | None:
    if kfre.status == "not-applicable":
        return None
    kidney_labs = ("egfr_ml_min_1_73m2", "uacr_mg_g")
    blockers = _lab_blockers(kfre, kidney_labs)
    if blockers or kfre.status != "computed":
        return _not_computed_card(
            kfre, "Kidney failure risk", "kidney failure risk (KFRE)", kidney_labs, patient_id, link
        )
    o: dict[str, Any] = kfre.outputs
    two, five = o["risk_2y_kidney_failure"], o["risk_5y_kidney_failure"]
    indicator: Indicator
    if two > KFRE_KRT_PREPARATION_2Y:
        advice = "2-year risk > 40%: KDIGO 2024 advises preparing for kidney replacement therapy."
        indicator = "critical"
    elif two > KFRE_MULTIDISCIPLINARY_2Y:
        advice = "2-year risk > 10%: KDIGO 2024 advises multidisciplinary care."
        indicator = "warning"
    elif five >= KFRE_REFERRAL_5Y:
        advice = "5-year risk >= 5%: KDIGO 2024 supports nephrology referral."
        indicator = "warning"
    else:
        advice = "Below the KDIGO 2024 referral thresholds."
        indicator = "info"
    return Card(
        uuid=str(uuid.uuid4()),
        summary=f"Kidney failure risk {pct(two)} at 2 years, {pct(five)} at 5 years (KFRE)"[:139],
        detail="\n".join(
            [
                f"**Kidney failure risk (KFRE, 4-variable)**: 2-year {pct(two)}, "
                f"5-year {pct(five)}. {advice}",
                "",
                "**The patient's inputs**",
                *input_rows(kfre.inputs),
                "",
                *factor_lines(kfre, "risk_5y_kidney_failure"),
                "",
                *missing_section(kfre),
                "",
                *model_section(kfre),
            ]
        ),
        indicator=indicator,
        source=model_source(kfre),
        overrideReasons=list(OVERRIDE_REASONS),
        links=[link],
    )
