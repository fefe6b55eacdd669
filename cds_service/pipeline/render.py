"""Shared words and links for every card and the clinician app: percentages, input
labels, output names, the coded override reasons and the SMART link to the app.

The patient-view cards themselves are built in `cds_service.services` (`ascvd_cards`,
`cardio_renal_cards`, their words in `card_text`).
"""

from __future__ import annotations

import json
import re

from cds_service.http.cards import Coding, Link
from cds_service.services.catalog import ServiceDefinition

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


# Characters by which data text could become Markdown structure in the EHR's renderer
# (CDS Hooks 2.0: `detail` is GitHub-flavoured Markdown): links and images ([ ] ( ) !),
# raw HTML and entities (< > &), table cells (|), code spans (`), emphasis (* ~, and _
# unless between letters or digits, where GFM never reads it as emphasis),
# headings (#), the escape itself (\), and ':', where GFM's bare-URL autolinks start.
# CommonMark renders a backslash-escaped ASCII punctuation character as itself (spec
# 0.31, section 2.4), so the clinician reads the text as it was recorded.
_MD_SPECIAL = re.compile(r"([\\`*\[\]()<>#+!|~&:]|(?<![^\W_])_|_(?![^\W_]))")
# GFM links "www." without a scheme; an escaped dot breaks the match.
_MD_WWW = re.compile(r"(?i)(www)\.")
# GFM's e-mail autolink is found in the rendered text, after escapes are undone, so
# no escape stops it: a zero-width space after "@" (never an e-mail domain's first
# character) does, and the clinician still reads "a@b".
_MD_AT = "@\u200b"
# A list item or setext underline where data starts a line ("- {reason}").
# ("1. x" is an ordered list item; a lone "-", "=" a bullet, rule or heading underline.)
_MD_LINE_START = re.compile(r"^(\d{0,9})((?<=\d)[.)](?=\s|$)|(?<!\d)[-=])")


def md_text(value: object) -> str:
    """Data text (a value, unit, name, source or reason from FHIR) made inert for card
    Markdown: it reads the same, and can never be a link, an image, HTML, a new line or a
    table cell. Every data-derived string enters `detail` through this one function."""
    text = " ".join(str(value).split())  # a line break would start a new block or row
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_WWW.sub(r"\1\\.", text).replace("@", _MD_AT)
    return _MD_LINE_START.sub(r"\1\\\2", text)


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
