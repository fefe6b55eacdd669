"""The ``cardio-renal-risk`` cards: an acute kidney injury card when the creatinine is
acute; else the AHA PREVENT risk and the KDIGO 2024 kidney card (CKD stage, KFRE risk,
referral).

Rendered from the one `PatientView` the patient-view services share; the words come
from `card_text`.
"""

from __future__ import annotations

from cds_service.http.cards import Card, Indicator, Link
from cds_service.pipeline.patient_view import PatientView
from cds_service.pipeline.render import md_text, pct
from cds_service.services.card_text import (
    ORDER_WORDS,
    aki_words,
    ckd_words,
    day_of,
    detail_text,
    factors_line,
    inputs_line,
    make_card,
    mg_dl,
    not_computed_card,
    order_for,
    outside_ages,
    stale_vitals_line,
    too_old_words,
    year_of,
)
from cds_service.services.cardio_renal import what_ifs
from twin_engine.clinical.guidelines import (
    KRT_PREPARATION_KFRE_2Y,
    REFER_EGFR_BELOW,
    kidney_failure_care,
    refer_to_nephrology,
)
from twin_engine.clinical.kidney import CKD_EGFR_BELOW
from twin_engine.clinical.staleness import STALE_AFTER

PREVENT_EVIDENCE = "Evidence: AHA PREVENT equations (Khan et al., Circulation 2024)."
KIDNEY_EVIDENCE = "Evidence: KDIGO 2024 CKD guideline; KFRE (Tangri et al., JAMA 2011, 2016)."
AKI_EVIDENCE = "Evidence: KDIGO 2012 AKI guideline, section 2.1."

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


def _aki_card(view: PatientView, link: Link) -> Card:
    k = view.state.aki
    assert k is not None  # noqa: S101
    summary = f"Acute kidney injury, {aki_words(k)}; no kidney-based risk until stable"
    detail = detail_text(
        [
            f"Creatinine {mg_dl(k.creatinine_mg_dl)} mg/dL on {day_of(k.time)} "
            f"({md_text(k.source)}); baseline "
            f"{mg_dl(k.baseline_mg_dl)} mg/dL ({k.baseline_basis}).",
            "eGFR equations assume a steady state: no eGFR, PREVENT or KFRE from this value.",
        ],
        [],
        AKI_EVIDENCE,
    )
    return make_card(
        summary, detail, "critical" if k.stage >= 2 else "warning", KIDNEY_SOURCE, link
    )


def _prevent_card(view: PatientView, link: Link) -> Card | None:
    p, p30 = view.prevent, view.prevent_30y
    if p is None or p30 is None:
        return None  # not run: the caller shows no PREVENT
    if view.prevent_excluded is not None or p.status == "not-applicable" or outside_ages(view, p):
        return None
    not_computed = not_computed_card(
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
    detail = detail_text(
        [factors_line(p, "risk_10y_cvd") or "", inputs_line(p)],
        [_statin_what_if(view, o["risk_10y_ascvd"]), thirty, treated, stale_vitals_line(p)],
        PREVENT_EVIDENCE,
    )
    indicator: Indicator = "warning" if o["risk_10y_cvd"] >= 0.075 else "info"
    return make_card(summary, detail, indicator, PREVENT_SOURCE, link, decision=False)


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
            f"{egfr_text} on {day_of(k.egfr.time)}, below 60 for under 3 months: "
            "repeat to confirm CKD"
        )
        detail = detail_text(
            [
                "CKD needs an abnormality lasting more than 3 months; "
                "no kidney failure risk before that."
            ],
            [],
            KIDNEY_EVIDENCE,
        )
        return make_card(summary, detail, "info", KIDNEY_SOURCE, link, decision=False)
    if k.g_category not in ("G3a", "G3b", "G4", "G5"):
        return None  # albuminuria with eGFR >= 60: CKD, but outside KFRE's population
    stage = ckd_words(k)
    since = year_of(k.abnormal_since)
    kfre = view.kfre
    five = view.usable_risk(kfre, "risk_5y_kidney_failure") if kfre is not None else None
    refer = refer_to_nephrology(egfr, five)
    egfr_stale = s.as_of - k.egfr.time > STALE_AFTER["egfr"]
    if five is not None and kfre is not None:
        two = kfre.outputs["risk_2y_kidney_failure"]
        care = kidney_failure_care(two)
        action = "refer to nephrology" if refer else "below the referral threshold"
        summary = f"{stage}: kidney failure risk {pct(five)} at 5 years (KFRE); {action}"
        detail = detail_text(
            [
                f"{egfr_text} ({day_of(k.egfr.time)}), abnormal since {since}. "
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
        return make_card(summary, detail, indicator, KIDNEY_SOURCE, link)
    order = order_for(view, kfre, "Inputs for the kidney failure risk (KFRE)") if kfre else []
    missing = too_old_words(view, kfre) if kfre is not None else None
    if egfr_stale:
        summary = (
            f"{stage} since {since}: eGFR from {year_of(k.egfr.time)} is too old "
            "(over 1 year); order a creatinine"
        )
    elif egfr < REFER_EGFR_BELOW:
        summary = f"{stage} ({egfr_text} since {since}): refer to nephrology (eGFR under 30)"
    else:
        what = missing[1] if missing else "urine albumin/creatinine"
        summary = (
            f"{stage} ({egfr_text} since {since}): order {ORDER_WORDS[what]} "
            "for the kidney failure risk"
        )
    detail = detail_text(
        [f"Chronic: abnormal since {since} (more than 3 months)."],
        [f"Kidney failure risk (KFRE) not computed: {missing[0]}." if missing else ""],
        KIDNEY_EVIDENCE,
    )
    return make_card(summary, detail, "warning" if refer else "info", KIDNEY_SOURCE, link, order)
