"""The ``ascvd-risk`` cards: the 2018 AHA/ACC statin decision, benefit group first,
the 10-year ASCVD risk (Pooled Cohort Equations) where it decides.

Rendered from the one `PatientView` the patient-view services share; the words come
from `card_text`.
"""

from __future__ import annotations

import uuid

from cds_service.http.cards import Action, Card, Indicator, Link, Suggestion
from cds_service.pipeline.patient_view import PatientView
from cds_service.pipeline.render import md_text, pct
from cds_service.services.card_text import (
    blocked_line,
    day_of,
    detail_text,
    factors_line,
    inputs_line,
    make_card,
    not_computed_card,
    outside_ages,
    stale_vitals_line,
    statin_words,
    year_of,
)
from twin_engine.clinical.guidelines import risk_tier, uspstf_2022_grade
from twin_engine.clinical.statins import SUGGESTED_STATIN, Intensity

#: 'atorvastatin 20 mg, moderate intensity', the current statin as the summaries say it.
_on = statin_words

PCE_EVIDENCE = "Evidence: 2018 AHA/ACC cholesterol guideline; Pooled Cohort Equations (Goff 2013)."
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
        f"On {_on(current)} since {day_of(current.start)}." if current else "No statin on record."
    )
    risk_line = _pce_line(view)
    if a.group == "pregnancy":
        summary = (
            "Pregnant and on a statin: stop it; statins are not used in pregnancy"
            if a.decision == "stop"
            else "Pregnant: no statin and no 10-year ASCVD risk until after the pregnancy"
        )
        detail = detail_text(
            [
                f"Pregnancy recorded since {day_of(s.pregnancy.since if s.pregnancy else None)}.",
                treated,
            ],
            [],
            "Evidence: 2018 AHA/ACC cholesterol guideline (statins and pregnancy).",
        )
        return [
            make_card(
                summary, detail, "warning" if a.decision == "stop" else "info", PCE_SOURCE, link
            )
        ]
    if a.group == "kidney-failure":
        summary = (
            "Kidney failure: continuing the current statin may be reasonable; no 10-year risk"
            if a.decision == "continue"
            else "Kidney failure: starting a statin is not advised; no 10-year ASCVD risk"
        )
        what = s.kidney_failure.what if s.kidney_failure else "kidney failure"
        detail = detail_text(
            [
                f"{what.capitalize()} since "
                f"{day_of(s.kidney_failure.since if s.kidney_failure else None)}.",
                treated,
            ],
            [],
            "Evidence: 2018 AHA/ACC cholesterol guideline (CKD on dialysis); USPSTF 2022.",
        )
        return [make_card(summary, detail, "info", PCE_SOURCE, link)]
    if a.group == "secondary":
        f = s.clinical_ascvd
        what = f"{f.what}, {year_of(f.since)}" if f else "on record"
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
        detail = detail_text(
            [
                f"Secondary prevention: {a.why}. A primary-prevention risk score does not apply.",
                treated,
            ],
            [f"Source: {md_text(f.source)} ({day_of(f.since)})." if f else ""],
            "Evidence: 2018 AHA/ACC cholesterol guideline, section 4.1 (clinical ASCVD).",
        )
        indicator: Indicator = "warning" if a.decision in ("start", "intensify") else "info"
        return [make_card(summary, detail, indicator, PCE_SOURCE, link, suggestions)]
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
        detail = detail_text(
            [f"Statin benefit group (severe hypercholesterolaemia): {a.why}.", treated],
            [
                f"LDL measured {day_of(ldl.time if ldl else None)} "
                f"({md_text(ldl.source) if ldl else ''})."
            ],
            "Evidence: 2018 AHA/ACC cholesterol guideline, section 4.2 (LDL-C ≥ 190 mg/dL).",
        )
        return [
            make_card(
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
        detail = detail_text(
            [f"Statin benefit group: {a.why}.", treated],
            [risk_line, blocked_line(view, view.pce)],
            "Evidence: 2018 AHA/ACC cholesterol guideline, section 4.3 (diabetes).",
        )
        return [
            make_card(
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
        f" from the lipids before the statin ({day_of(view.state.pretreatment_lipids.time)})"
        if view.pce_basis == "before-statin" and view.state.pretreatment_lipids
        else ""
    )
    factors = factors_line(p, "risk_10y_ascvd") or ""
    return f"10-year ASCVD risk {pct(risk)} ({risk_tier(risk)}){when}. {factors}".strip()


def _primary_cards(
    view: PatientView, link: Link, suggestions: list[Suggestion], treated: str, risk_line: str
) -> list[Card]:
    s, a, p = view.state, view.advice, view.pce
    current = s.current_statin
    if view.pce_excluded is not None or p.status == "not-applicable" or outside_ages(view, p):
        return []  # outside the equations' population: silent
    if current is not None and view.pce_basis == "none":
        summary = f"On {_on(current)}; no lipids from before it, so no untreated risk estimate"
        detail = detail_text(
            [
                treated,
                "The Pooled Cohort Equations are for people not on a statin: "
                "on-treatment lipids underestimate the untreated risk.",
            ],
            [],
            PCE_EVIDENCE,
        )
        return [make_card(summary, detail, "info", PCE_SOURCE, link, decision=False)]
    not_computed = not_computed_card(
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
    detail = detail_text(
        [risk_line, inputs_line(p), treated],
        [_treated_lipids_line(view), uspstf, stale_vitals_line(p)],
        PCE_EVIDENCE,
    )
    indicator: Indicator = {"high": "critical", "intermediate": "warning"}.get(tier, "info")  # type: ignore[assignment]
    return [make_card(f"{head}: {action}", detail, indicator, PCE_SOURCE, link, suggestions)]


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
        f"Used the untreated lipids of {day_of(panel.time)} (total {panel.total_mg_dl:.0f}, "
        f"HDL {panel.hdl_mg_dl:.0f} mg/dL) with today's other inputs."
    )


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
