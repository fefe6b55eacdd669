"""Shared words and links for every card and the clinician app: percentages, input
labels, output names, the coded override reasons and the SMART link to the app.

The patient-view cards themselves are built in `cds_service.guideline_cards`.
"""

from __future__ import annotations

import json

from cds_service.cards import Coding, Link
from cds_service.services import ServiceDefinition

# Why a clinician may not follow a recommendation: the six categories of the HL7
# Non-Adherence Reason code system (CDS Hooks IG, terminology.hl7.org), offered as
# overrideReasons so feedback is coded, not free text.
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"
OVERRIDE_REASONS: tuple[Coding, ...] = tuple(
    Coding(system=NON_ADHERENCE, code=code, display=display)
    for code, display in (
        ("cds-not-applicable", "PC CDS does not apply to patient"),
        ("cds-suboptimal-context", "PC CDS delivered in suboptimal context"),
        (
            "recipient-disagrees-evidence",
            "Recipient disagrees with recommendation because of issues with the evidence",
        ),
        (
            "recipient-concerns-outcomes",
            "Recipient has concerns regarding potential health outcomes",
        ),
        (
            "does-not-align-preferences",
            "Recommendation does not align with patient preferences or values",
        ),
        ("not-convenient-feasible", "Not convenient or feasible"),
    )
)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _value(value: float, unit: str) -> str:
    if unit in ("{yes/no}", "1") and value in (0.0, 1.0):
        return "yes" if value == 1.0 else "no"
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{text} {unit}" if unit else text


# Clinician-facing names for the twin's features, and words for binary values.
_LABELS: dict[str, str] = {
    "age_years": "Age",
    "female": "Sex",
    "african_american": "Race (equation used)",
    "total_cholesterol_mg_dl": "Total cholesterol",
    "hdl_cholesterol_mg_dl": "HDL cholesterol",
    "systolic_bp_mm_hg": "Systolic BP",
    "treated_hypertension": "Antihypertensive treatment",
    "current_smoker": "Current smoker",
    "diabetes": "Diabetes",
    "statin": "Statin",
    "egfr_ml_min_1_73m2": "eGFR",
    "uacr_mg_g": "Urine albumin/creatinine",
}
_BINARY_WORDS: dict[str, tuple[str, str]] = {
    "female": ("male", "female"),
    "african_american": ("white or other", "African American"),
}


def label(name: str, description: str) -> str:
    return _LABELS.get(name, description)


def shown_value(name: str, value: float, unit: str) -> str:
    words = _BINARY_WORDS.get(name)
    if words and value in (0.0, 1.0):
        return words[int(value)]
    return _value(value, unit)


def output_label(name: str) -> str:
    """``risk_10y_cvd`` → ``10-year CVD risk``; other names are shown as they are."""
    parts = name.split("_")
    if len(parts) >= 3 and parts[0] == "risk" and parts[1].endswith("y"):
        what = " ".join(parts[2:])
        what = {"cvd": "CVD", "ascvd": "ASCVD", "hf": "heart failure"}.get(what, what)
        return f"{parts[1][:-1]}-year {what} risk"
    return name.replace("_", " ")


def app_link(
    service: ServiceDefinition, launch_url: str, patient_id: str, twin_version: int
) -> Link:
    return Link(
        label="Open the patient's twin",
        url=launch_url,
        type="smart",
        appContext=json.dumps(
            {"patient": patient_id, "twinVersion": twin_version, "service": service.id},
            separators=(",", ":"),
        ),
    )
