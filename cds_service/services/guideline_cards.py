"""The patient-view cards, read in five seconds: the decision first, then the number.

`summary` (< 140 characters) says what to do in plain words; `detail` (<= 700
characters) gives the number, the two or three factors that moved it, what was missing
or too old, and one line of evidence. Units are written as people write them (mmHg,
mL/min/1.73 m2). The full inputs table, model card and Shapley waterfall are in the
clinician app behind the card's link; the audit record keeps everything.

Every card is rendered from one `PatientView`, shared by the services.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from cds_service.http.cards import Action, Card, Indicator, Link, Source, Suggestion
from cds_service.pipeline.patient_view import PatientView
from cds_service.pipeline.predict import Assessment, Factor
from cds_service.pipeline.render import OVERRIDE_REASONS, label, md_text, pct
from cds_service.services.cardio_renal import ORDERABLE, order_suggestion, what_ifs
from onnx_models.errors import RangeViolation
from twin_engine.clinical.guidelines import (
    KRT_PREPARATION_KFRE_2Y,
    REFER_EGFR_BELOW,
    kidney_failure_care,
    refer_to_nephrology,
    risk_tier,
    uspstf_2022_grade,
)
from twin_engine.clinical.kidney import CKD_EGFR_BELOW, AcuteKidneyInjury, KidneyStatus
from twin_engine.clinical.staleness import STALE_AFTER, limit_years
from twin_engine.clinical.statins import SUGGESTED_STATIN, Intensity, StatinExposure

SUMMARY_MAX = 139
DETAIL_MAX = 700

#: UCUM codes → how clinicians write the unit.
PLAIN_UNITS: dict[str, str] = {
    "mm[Hg]": "mmHg",
    "mL/min/{1.73_m2}": "mL/min/1.73 m2",
    "kg/m2": "kg/m2",
    "years": "years",
    "a": "years",
}
_LAB_STALE_KEY = {
    "total_cholesterol_mg_dl": "total_cholesterol",
    "hdl_cholesterol_mg_dl": "hdl_cholesterol",
    "ldl_cholesterol_mg_dl": "ldl_cholesterol",
    "egfr_ml_min_1_73m2": "creatinine",
    "uacr_mg_g": "uacr",
}
_LAB_WORDS = {
    "total_cholesterol_mg_dl": "lipids",
    "hdl_cholesterol_mg_dl": "lipids",
    "ldl_cholesterol_mg_dl": "lipids",
    "egfr_ml_min_1_73m2": "eGFR",
    "uacr_mg_g": "urine albumin/creatinine",
}
_ORDER_WORDS = {
    "lipids": "a lipid panel",
    "eGFR": "a creatinine",
    "urine albumin/creatinine": "a urine albumin/creatinine ratio",
}
PCE_EVIDENCE = "Evidence: 2018 AHA/ACC cholesterol guideline; Pooled Cohort Equations (Goff 2013)."
PREVENT_EVIDENCE = "Evidence: AHA PREVENT equations (Khan et al., Circulation 2024)."
KIDNEY_EVIDENCE = "Evidence: KDIGO 2024 CKD guideline; KFRE (Tangri et al., JAMA 2011, 2016)."
AKI_EVIDENCE = "Evidence: KDIGO 2012 AKI guideline, section 2.1."


def plain_unit(unit: str) -> str:
    return PLAIN_UNITS.get(unit, unit)


def plain_value(name: str, value: float, unit: str) -> str:
    if unit in ("1", "{yes/no}", "") and value in (0.0, 1.0):
        return "yes" if value == 1.0 else "no"
    number = f"{value:.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:.1f}"
    return f"{number} {plain_unit(unit)}".strip()


def _year(t: datetime | None) -> str:
    return str(t.year) if t else "an unknown date"


def _day(t: datetime | None) -> str:
    return t.date().isoformat() if t else "an unknown date"


def _factor_words(f: Factor) -> str:
    name = words(f.name, f.description)
    sign = "+" if f.contribution >= 0 else "-"
    points = f"{sign}{abs(100 * f.contribution):.1f} points"
    if f.unit in ("1", "{yes/no}", ""):
        if f.name == "female":
            return f"{'female' if f.value == 1.0 else 'male'} sex ({points})"
        if f.name == "african_american":
            return f"race in the equation ({points})"
        return f"{name.lower()}: {'yes' if f.value == 1.0 else 'no'} ({points})"
    return f"{name} {plain_value(f.name, f.value, f.unit)} ({points})"


def factors_line(a: Assessment, output: str, n: int = 3) -> str | None:
    factors = [f for f in a.factors_by_output.get(output, ()) if f.contribution != 0.0][:n]
    if not factors:
        return None
    return "Main factors: " + "; ".join(_factor_words(f) for f in factors) + "."


def _detail(required: list[str], optional: list[str], evidence: str) -> str:
    """Required lines, then optional ones while they fit, then the evidence line."""
    # Paragraphs: `detail` is GitHub-flavoured Markdown, where one newline joins lines.
    lines = [line for line in required if line]
    for line in (o for o in optional if o):
        if len("\n\n".join([*lines, line, evidence])) <= DETAIL_MAX:
            lines.append(line)
    text = "\n\n".join([*lines, evidence])
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _card(
    summary: str,
    detail: str,
    indicator: Indicator,
    source: str,
    link: Link,
    suggestions: list[Suggestion] | None = None,
    *,
    decision: bool = True,
) -> Card:
    return Card(
        uuid=str(uuid.uuid4()),
        summary=_summary(summary),
        detail=detail,
        indicator=indicator,
        source=Source(label=source),
        suggestions=suggestions or None,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=list(OVERRIDE_REASONS) if decision else None,
        links=[link],
    )


# --- words for the blockers ---------------------------------------------------------


def too_old_words(view: PatientView, a: Assessment) -> tuple[str, str] | None:
    """("lipids from 2017 are too old (over 5 years)", "lipids") for the first stale
    laboratory input, or the missing ones ("no lipids on record")."""
    blockers = view.lab_blockers(a)
    if not blockers:
        return None
    stale = [i for i in a.stale if i.name in blockers]
    if stale:
        first = stale[0]
        what = _LAB_WORDS[first.name]
        years = limit_years(_LAB_STALE_KEY[first.name])
        limit = f"over {years:.0f} year{'s' if years != 1 else ''}"
        verb = "are" if what in ("lipids",) else "is"
        return f"{what} from {_year(first.time)} {verb} too old ({limit})", what
    names = [lower_first(label(b, b)) for b in blockers]
    return "no usable " + ", ".join(names), _LAB_WORDS[blockers[0]]


def range_words(v: RangeViolation, equations: str) -> str:
    """'systolic BP 194 mmHg is above the 180 the PREVENT equations accept'."""
    name = words(v.name, v.name.replace("_", " "))
    shown = plain_value(v.name, v.value, v.unit)
    if v.value > v.max:
        return f"{name} {shown} is above the {v.max:g} the {equations} equations accept"
    return f"{name} {shown} is below the {v.min:g} the {equations} equations accept"


#: Words for model inputs the shared labels do not name.
_WORDS: dict[str, str] = {
    "bmi_kg_m2": "BMI",
    "age_years": "age",
    "systolic_bp_mm_hg": "systolic BP",
    "treated_hypertension": "blood-pressure treatment",
}


def words(name: str, description: str) -> str:
    """The input's name as a clinician says it."""
    return _WORDS.get(name) or lower_first(label(name, description))


def lower_first(text: str) -> str:
    """'Systolic BP' -> 'systolic BP'; acronyms (HDL, eGFR) stay as they are."""
    head = text.split(" ")[0]
    return text if head.isupper() or head[:1].islower() else text[0].lower() + text[1:]


def _missing_words(a: Assessment) -> str:
    names = [words(n.name, n.description) for n in a.not_used]
    return "missing " + ", ".join(names) if names else "; ".join(a.problems)


def outside_ages(view: PatientView, a: Assessment) -> bool:
    """True when the patient's age is outside the model's: no number and no lab order."""
    spec = next((i for i in a.model.card.inputs if i.name == "age_years"), None)
    age = view.state.age_years
    return spec is not None and (age is None or not spec.min <= age <= spec.max)


def _order(view: PatientView, a: Assessment, why: str) -> list[Suggestion]:
    names = tuple(n for n in view.lab_blockers(a) if n in ORDERABLE)
    return [order_suggestion(view.twin.patient_id, names, why)] if names else []


def _statin_suggestion(patient_id: str, intensity: Intensity, why: str) -> Suggestion:
    rxnorm, display, _mg = SUGGESTED_STATIN[intensity]
    resource = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": rxnorm,
                    "display": display,
                }
            ],
            "text": display,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "dosageInstruction": [
            {
                "text": "1 tablet by mouth once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            }
        ],
        "reasonCode": [{"text": why}],
    }
    return Suggestion(
        label=f"Draft {display} once daily ({intensity} intensity)",
        uuid=str(uuid.uuid4()),
        isRecommended=True,
        actions=[Action(type="create", description=f"Draft {display}", resource=resource)],
    )


def _on(x: StatinExposure) -> str:
    intensity = f"{x.intensity} intensity" if x.intensity else "intensity not recognised"
    return f"{x.describe()}, {intensity}"


# --- ascvd-risk -------------------------------------------------------------------------

PCE_SOURCE = "twin-cds · 2018 AHA/ACC cholesterol guideline, Pooled Cohort Equations"


def ascvd_cards(view: PatientView, link: Link) -> list[Card]:
    """The statin decision: benefit group first, the 10-year risk where it decides."""
    if view.deceased:
        return []
    s, a, pid = view.state, view.advice, view.twin.patient_id
    current = s.current_statin
    age = f"{s.age_years:.0f}" if s.age_years is not None else "unknown age"
    suggestions: list[Suggestion] = []
    if a.decision in ("start", "intensify") and a.indicated is not None:
        suggestions = [_statin_suggestion(pid, a.indicated, a.why)]
    treated = (
        f"On {_on(current)} since {_day(current.start)}." if current else "No statin on record."
    )
    risk_line = _pce_line(view)
    if a.group == "pregnancy":
        summary = (
            "Pregnant and on a statin: stop it; statins are not used in pregnancy"
            if a.decision == "stop"
            else "Pregnant: no statin and no 10-year ASCVD risk until after the pregnancy"
        )
        detail = _detail(
            [
                f"Pregnancy recorded since {_day(s.pregnancy.since if s.pregnancy else None)}.",
                treated,
            ],
            [],
            "Evidence: 2018 AHA/ACC cholesterol guideline (statins and pregnancy).",
        )
        return [
            _card(summary, detail, "warning" if a.decision == "stop" else "info", PCE_SOURCE, link)
        ]
    if a.group == "kidney-failure":
        summary = (
            "Kidney failure: continuing the current statin may be reasonable; no 10-year risk"
            if a.decision == "continue"
            else "Kidney failure: starting a statin is not advised; no 10-year ASCVD risk"
        )
        what = s.kidney_failure.what if s.kidney_failure else "kidney failure"
        detail = _detail(
            [
                f"{what.capitalize()} since "
                f"{_day(s.kidney_failure.since if s.kidney_failure else None)}.",
                treated,
            ],
            [],
            "Evidence: 2018 AHA/ACC cholesterol guideline (CKD on dialysis); USPSTF 2022.",
        )
        return [_card(summary, detail, "info", PCE_SOURCE, link)]
    if a.group == "secondary":
        f = s.clinical_ascvd
        what = f"{f.what}, {_year(f.since)}" if f else "on record"
        ind = a.indicated or "high"
        if a.decision == "start":
            summary = (
                f"Clinical ASCVD ({what}): start a {ind}-intensity statin; no risk score applies"
            )
        elif a.decision == "intensify" and current:
            summary = f"Clinical ASCVD ({what}): on {_on(current)}; {ind} intensity is advised"
        else:
            summary = (
                f"Clinical ASCVD ({what}): on {_on(current) if current else 'a statin'}, as advised"
            )
        detail = _detail(
            [
                f"Secondary prevention: {a.why}. A primary-prevention risk score does not apply.",
                treated,
            ],
            [f"Source: {md_text(f.source)} ({_day(f.since)})." if f else ""],
            "Evidence: 2018 AHA/ACC cholesterol guideline, section 4.1 (clinical ASCVD).",
        )
        indicator: Indicator = "warning" if a.decision in ("start", "intensify") else "info"
        return [_card(summary, detail, indicator, PCE_SOURCE, link, suggestions)]
    if a.group == "ldl-190":
        ldl = s.untreated_ldl
        value = f"{ldl.value:.0f}" if ldl and ldl.value is not None else "≥ 190"
        if a.decision == "start":
            summary = (
                f"LDL {value} mg/dL: start a high-intensity statin; "
                "no risk estimate is needed at 190 or more"
            )
        elif a.decision == "intensify" and current:
            summary = (
                f"LDL {value} mg/dL before treatment: on {_on(current)}; high intensity is advised"
            )
        else:
            on = _on(current) if current else "a statin"
            summary = f"LDL {value} mg/dL before treatment: on {on}, as advised"
        detail = _detail(
            [f"Statin benefit group (severe hypercholesterolaemia): {a.why}.", treated],
            [
                f"LDL measured {_day(ldl.time if ldl else None)} "
                f"({md_text(ldl.source) if ldl else ''})."
            ],
            "Evidence: 2018 AHA/ACC cholesterol guideline, section 4.2 (LDL-C ≥ 190 mg/dL).",
        )
        return [
            _card(
                summary,
                detail,
                "warning" if a.decision != "continue" else "info",
                PCE_SOURCE,
                link,
                suggestions,
            )
        ]
    if a.group == "diabetes":
        risk = view.pce_risk
        whatever = f" ({pct(risk)})" if risk is not None else ""
        if a.decision == "start":
            summary = (
                f"Diabetes at {age}: start at least a moderate-intensity statin, "
                f"whatever the 10-year risk{whatever}"
            )
        elif a.decision == "intensify" and current:
            summary = (
                f"Diabetes at {age}: on {_on(current)}; at least moderate intensity is advised"
            )
        else:
            summary = f"Diabetes at {age}: on {_on(current) if current else 'a statin'}, as advised"
        detail = _detail(
            [f"Statin benefit group: {a.why}.", treated],
            [risk_line, _blocked_line(view, view.pce)],
            "Evidence: 2018 AHA/ACC cholesterol guideline, section 4.3 (diabetes).",
        )
        return [
            _card(
                summary,
                detail,
                "warning" if a.decision != "continue" else "info",
                PCE_SOURCE,
                link,
                suggestions,
            )
        ]
    return _primary_cards(view, link, suggestions, treated, risk_line)


def _pce_line(view: PatientView) -> str:
    p = view.pce
    if p.status != "computed" or view.lab_blockers(p):
        return ""
    risk = p.outputs["risk_10y_ascvd"]
    when = (
        f" from the lipids before the statin ({_day(view.state.pretreatment_lipids.time)})"
        if view.pce_basis == "before-statin" and view.state.pretreatment_lipids
        else ""
    )
    factors = factors_line(p, "risk_10y_ascvd") or ""
    return f"10-year ASCVD risk {pct(risk)} ({risk_tier(risk)}){when}. {factors}".strip()


def inputs_line(a: Assessment) -> str:
    """The lipid and blood-pressure values a number used, with their dates."""
    shown = {i.name: i for i in a.inputs}
    parts = []
    tc, hdl = shown.get("total_cholesterol_mg_dl"), shown.get("hdl_cholesterol_mg_dl")
    if tc and hdl:
        parts.append(
            f"total cholesterol {tc.value:.0f} mg/dL, HDL {hdl.value:.0f} mg/dL ({_day(tc.time)})"
        )
    sbp = shown.get("systolic_bp_mm_hg")
    if sbp:
        parts.append(f"systolic BP {sbp.value:.0f} mmHg ({_day(sbp.time)})")
    return "Used: " + "; ".join(parts) + "." if parts else ""


def _blocked_line(view: PatientView, a: Assessment) -> str:
    blocked = too_old_words(view, a)
    return f"No 10-year risk: {blocked[0]}." if blocked else ""


def _not_computed(
    view: PatientView,
    a: Assessment,
    link: Link,
    *,
    head: str,
    equations: str,
    source: str,
    evidence: str,
    order_why: str,
    lines: list[str],
) -> Card | None:
    """The card for a risk that is not computed (inputs too old or absent, with the order
    for them; outside the equations' ranges; missing), or None when it was computed."""
    blocked = too_old_words(view, a)
    if blocked is not None:
        return _card(
            f"{head}: {blocked[0]}; order {_ORDER_WORDS[blocked[1]]}",
            _detail(
                ["A risk from values this old or absent would not be the patient's today.", *lines],
                [],
                evidence,
            ),
            "info",
            source,
            link,
            _order(view, a, order_why),
            decision=False,
        )
    if a.status == "out-of-range":
        said = "; ".join(range_words(v, equations) for v in a.violations)
        summary = f"{head}: {said}"
    elif a.status != "computed":
        summary = f"{head}: {_missing_words(a)}"
    else:
        return None
    return _card(summary, _detail(lines, [], evidence), "info", source, link, decision=False)


def _primary_cards(
    view: PatientView, link: Link, suggestions: list[Suggestion], treated: str, risk_line: str
) -> list[Card]:
    s, a, p = view.state, view.advice, view.pce
    current = s.current_statin
    if view.pce_excluded is not None or p.status == "not-applicable" or outside_ages(view, p):
        return []  # outside the equations' population: silent
    if current is not None and view.pce_basis == "none":
        summary = f"On {_on(current)}; no lipids from before it, so no untreated risk estimate"
        detail = _detail(
            [
                treated,
                "The Pooled Cohort Equations are for people not on a statin: "
                "on-treatment lipids underestimate the untreated risk.",
            ],
            [],
            PCE_EVIDENCE,
        )
        return [_card(summary, detail, "info", PCE_SOURCE, link, decision=False)]
    not_computed = _not_computed(
        view,
        p,
        link,
        head="10-year ASCVD risk not computed",
        equations="Pooled Cohort",
        source=PCE_SOURCE,
        evidence=PCE_EVIDENCE,
        order_why="Inputs for the 10-year ASCVD risk",
        lines=[treated],
    )
    if not_computed is not None:
        return [not_computed]
    risk = p.outputs["risk_10y_ascvd"]
    tier = risk_tier(risk)
    head = (
        f"Untreated 10-year ASCVD risk {pct(risk)} ({tier}, before the statin)"
        if view.pce_basis == "before-statin"
        else f"10-year ASCVD risk {pct(risk)} ({tier})"
    )
    if a.decision == "start":
        action = f"start a {a.indicated}-intensity statin"
    elif a.decision == "intensify" and current:
        action = f"on {_on(current)}; {a.indicated} intensity is advised"
    elif a.decision == "continue" and current:
        action = f"on {_on(current)}"
    elif a.decision == "discuss":
        action = "discuss a statin if risk-enhancing factors are present"
    elif a.decision == "individual":
        action = "over 75, a statin is an individual decision"
    else:
        action = "no statin advised; lifestyle"
    grade = uspstf_2022_grade(
        s.age_years, risk, _uspstf_risk_factor(view), excluded=current is not None
    )
    uspstf = {
        "B": "USPSTF 2022: grade B, start a statin.",
        "C": "USPSTF 2022: grade C, offer a statin selectively.",
        "I": "USPSTF 2022: evidence insufficient at 76 and over.",
    }.get(grade or "", "")
    detail = _detail(
        [risk_line, inputs_line(p), treated],
        [_treated_lipids_line(view), uspstf, _stale_vitals_line(p)],
        PCE_EVIDENCE,
    )
    indicator: Indicator = {"high": "critical", "intermediate": "warning"}.get(tier, "info")  # type: ignore[assignment]
    return [_card(f"{head}: {action}", detail, indicator, PCE_SOURCE, link, suggestions)]


def _uspstf_risk_factor(view: PatientView) -> bool:
    """USPSTF 2022 risk factors: dyslipidaemia, diabetes, hypertension, smoking."""
    f = view.features
    ldl, hdl = f.get("ldl_cholesterol_mg_dl"), f.get("hdl_cholesterol_mg_dl")
    # USPSTF 2022 defines dyslipidaemia as LDL-C > 130 mg/dL or HDL-C < 40 mg/dL.
    dyslipidaemia = (ldl.value is not None and ldl.value > 130) or (
        hdl.value is not None and hdl.value < 40
    )
    sbp = f.get("systolic_bp_mm_hg")
    hypertension = f.get("treated_hypertension").value == 1.0 or (
        sbp.value is not None and sbp.value >= 130
    )
    return bool(
        dyslipidaemia or view.state.diabetes or hypertension or f.get("current_smoker").value == 1.0
    )


def _treated_lipids_line(view: PatientView) -> str:
    if view.pce_basis != "before-statin" or view.state.pretreatment_lipids is None:
        return ""
    panel = view.state.pretreatment_lipids
    return (
        f"Used the untreated lipids of {_day(panel.time)} (total {panel.total_mg_dl:.0f}, "
        f"HDL {panel.hdl_mg_dl:.0f} mg/dL) with today's other inputs."
    )


# --- cardio-renal-risk ------------------------------------------------------------------

PREVENT_SOURCE = "twin-cds · AHA PREVENT equations"
KIDNEY_SOURCE = "twin-cds · KDIGO 2024 CKD guideline, KFRE"


def cardio_renal_cards(view: PatientView, link: Link) -> list[Card]:
    """The AKI card when the creatinine is acute; else PREVENT and the kidney card."""
    if view.deceased:
        return []
    if view.state.aki is not None:
        return [_aki_card(view, link)]
    cards = [c for c in (_prevent_card(view, link), _kidney_card(view, link)) if c is not None]
    return cards


def _mg_dl(value: float) -> str:
    """Creatinine as laboratories print it: 0.97, 1.0, 3.1."""
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def aki_words(k: AcuteKidneyInjury) -> str:
    """'KDIGO stage 3: creatinine 3.1 mg/dL is 3.2x baseline 0.97' (card and app)."""
    return (
        f"KDIGO stage {k.stage}: creatinine {_mg_dl(k.creatinine_mg_dl)} mg/dL is "
        f"{k.ratio:.1f}x baseline {_mg_dl(k.baseline_mg_dl)}"
    )


def ckd_words(k: KidneyStatus) -> str:
    """'CKD G4 A3' (chronic) or 'G3a, not yet chronic' (card and app)."""
    stage = f"{k.g_category}{' ' + k.a_category if k.a_category else ''}"
    return f"CKD {stage}" if k.chronic else f"{stage}, not chronic (under 3 months)"


def statin_words(x: StatinExposure) -> str:
    """'atorvastatin 20 mg, moderate intensity' (card and app)."""
    return _on(x)


def _aki_card(view: PatientView, link: Link) -> Card:
    k = view.state.aki
    assert k is not None  # noqa: S101
    summary = f"Acute kidney injury, {aki_words(k)}; no kidney-based risk until stable"
    detail = _detail(
        [
            f"Creatinine {_mg_dl(k.creatinine_mg_dl)} mg/dL on {_day(k.time)} "
            f"({md_text(k.source)}); baseline "
            f"{_mg_dl(k.baseline_mg_dl)} mg/dL ({k.baseline_basis}).",
            "eGFR equations assume a steady state: no eGFR, PREVENT or KFRE from this value.",
        ],
        [],
        AKI_EVIDENCE,
    )
    return _card(summary, detail, "critical" if k.stage >= 2 else "warning", KIDNEY_SOURCE, link)


def _prevent_card(view: PatientView, link: Link) -> Card | None:
    p, p30 = view.prevent, view.prevent_30y
    if p is None or p30 is None:
        return None  # not run: the caller shows no PREVENT
    if view.prevent_excluded is not None or p.status == "not-applicable" or outside_ages(view, p):
        return None
    not_computed = _not_computed(
        view,
        p,
        link,
        head="Cardiovascular risk not computed",
        equations="PREVENT",
        source=PREVENT_SOURCE,
        evidence=PREVENT_EVIDENCE,
        order_why="Inputs for the PREVENT risk",
        lines=[],
    )
    if not_computed is not None:
        return not_computed
    o = p.outputs
    summary = (
        f"10-year cardiovascular risk {pct(o['risk_10y_cvd'])} (PREVENT): ASCVD "
        f"{pct(o['risk_10y_ascvd'])}, heart failure {pct(o['risk_10y_hf'])}"
    )
    thirty = (
        f"30-year cardiovascular risk {pct(p30.outputs['risk_30y_cvd'])}."
        if p30.status == "computed"
        else ""
    )
    statin = view.state.current_statin
    treated = (
        f"Cholesterol was measured on a statin ({statin.describe()}); "
        "PREVENT takes statin use as an input, as published."
        if statin is not None
        else ""
    )
    detail = _detail(
        [factors_line(p, "risk_10y_cvd") or "", inputs_line(p)],
        [_statin_what_if(view, o["risk_10y_ascvd"]), thirty, treated, _stale_vitals_line(p)],
        PREVENT_EVIDENCE,
    )
    indicator: Indicator = "warning" if o["risk_10y_cvd"] >= 0.075 else "info"
    return _card(summary, detail, indicator, PREVENT_SOURCE, link, decision=False)


def _statin_what_if(view: PatientView, risk: float) -> str:
    """One what-if line, only where a statin is a real option: not on one, and the
    guideline advises starting or discussing one (CTT, Lancet 2010)."""
    if view.state.current_statin is not None or view.advice.decision not in ("start", "discuss"):
        return ""
    intensity = view.advice.indicated or "moderate"  # the one the guideline indicates
    effect = next(
        (e for e in what_ifs(view.features, risk) if e.description.startswith(intensity)), None
    )
    if effect is None:
        return ""
    return (
        f"With a {intensity}-intensity statin: {pct(effect.risk_before)} → "
        f"{pct(effect.risk_after)} 10-year ASCVD risk (trial averages, CTT 2010)."
    )


def _stale_vitals_line(a: Assessment) -> str:
    stale = list(a.stale)
    if not stale:
        return ""
    return (
        "Stale, used as recorded: "
        + ", ".join(
            f"{lower_first(label(i.name, i.description))} from {_day(i.time)}" for i in stale
        )
        + "."
    )


def _kidney_card(view: PatientView, link: Link) -> Card | None:
    s = view.state
    k = s.kidney
    if s.kidney_failure is not None or k.egfr is None:
        return None
    egfr = k.egfr.value
    egfr_text = f"eGFR {egfr:.0f} mL/min/1.73 m2"
    if not k.chronic:
        if egfr >= CKD_EGFR_BELOW or s.age_years is None or s.age_years < 18:
            return None
        summary = (
            f"{egfr_text} on {_day(k.egfr.time)}, below 60 for under 3 months: "
            "repeat to confirm CKD"
        )
        detail = _detail(
            [
                "CKD needs an abnormality lasting more than 3 months; "
                "no kidney failure risk before that."
            ],
            [],
            KIDNEY_EVIDENCE,
        )
        return _card(summary, detail, "info", KIDNEY_SOURCE, link, decision=False)
    if k.g_category not in ("G3a", "G3b", "G4", "G5"):
        return None  # albuminuria with eGFR >= 60: CKD, but outside KFRE's population
    stage = ckd_words(k)
    since = _year(k.abnormal_since)
    kfre = view.kfre
    five = view.usable_risk(kfre, "risk_5y_kidney_failure") if kfre is not None else None
    refer = refer_to_nephrology(egfr, five)
    egfr_stale = s.as_of - k.egfr.time > STALE_AFTER["egfr"]
    if five is not None and kfre is not None:
        two = kfre.outputs["risk_2y_kidney_failure"]
        care = kidney_failure_care(two)
        action = "refer to nephrology" if refer else "below the referral threshold"
        summary = f"{stage}: kidney failure risk {pct(five)} at 5 years (KFRE); {action}"
        detail = _detail(
            [
                f"{egfr_text} ({_day(k.egfr.time)}), abnormal since {since}. "
                f"2-year risk {pct(two)}.",
                f"KDIGO 2024 advises {care}." if care else "",
                factors_line(kfre, "risk_5y_kidney_failure", 2) or "",
            ],
            [],
            KIDNEY_EVIDENCE,
        )
        indicator: Indicator = (
            "critical" if two > KRT_PREPARATION_KFRE_2Y else "warning" if refer else "info"
        )
        return _card(summary, detail, indicator, KIDNEY_SOURCE, link)
    order = _order(view, kfre, "Inputs for the kidney failure risk (KFRE)") if kfre else []
    missing = too_old_words(view, kfre) if kfre is not None else None
    if egfr_stale:
        summary = (
            f"{stage} since {since}: eGFR from {_year(k.egfr.time)} is too old "
            "(over 1 year); order a creatinine"
        )
    elif egfr < REFER_EGFR_BELOW:
        summary = f"{stage} ({egfr_text} since {since}): refer to nephrology (eGFR under 30)"
    else:
        what = missing[1] if missing else "urine albumin/creatinine"
        summary = (
            f"{stage} ({egfr_text} since {since}): order {_ORDER_WORDS[what]} "
            "for the kidney failure risk"
        )
    detail = _detail(
        [f"Chronic: abnormal since {since} (more than 3 months)."],
        [f"Kidney failure risk (KFRE) not computed: {missing[0]}." if missing else ""],
        KIDNEY_EVIDENCE,
    )
    return _card(summary, detail, "warning" if refer else "info", KIDNEY_SOURCE, link, order)
