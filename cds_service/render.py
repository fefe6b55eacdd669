"""Render an assessment as CDS Hooks cards a clinician can check line by line.

The detail shows the result, the patient's own inputs with their dates and
sources, the factors that moved the result (exact Shapley values against a stated
reference profile), what was missing or stale, and the model with its evidence.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from cds_service.assess import Assessment, Factor, InputUsed
from cds_service.cards import Card, Coding, Indicator, Link, Source
from cds_service.services import ServiceDefinition

# Risk categories of the 2018 AHA/ACC Guideline on the Management of Blood
# Cholesterol (Grundy et al., Circulation 2019;139:e1082, section 4.4.1): low < 5%,
# borderline 5% to < 7.5%, intermediate 7.5% to < 20%, high >= 20% 10-year ASCVD risk.
_ASCVD_BANDS: tuple[tuple[float, str], ...] = (
    (0.05, "low"),
    (0.075, "borderline"),
    (0.20, "intermediate"),
    (float("inf"), "high"),
)

TOP_FACTORS = 4

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


def risk_band(risk: float) -> str:
    for upper, name in _ASCVD_BANDS:
        if risk < upper:
            return name
    return "high"


def _indicator(band: str) -> Indicator:
    # Intermediate and high risk are when the guideline asks for a statin discussion;
    # high is marked critical so it is not lost among informational cards.
    indicators: dict[str, Indicator] = {"intermediate": "warning", "high": "critical"}
    return indicators.get(band, "info")


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _date(t: datetime | None) -> str:
    return t.date().isoformat() if t else "—"


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


def input_rows(inputs: tuple[InputUsed, ...]) -> list[str]:
    rows = ["| Input | Value | Date | Source |", "|---|---|---|---|"]
    for i in inputs:
        flag = " (stale)" if i.quality == "stale" else ""
        sources = ", ".join(i.sources[:2]) + (" …" if len(i.sources) > 2 else "")
        # A "no" with no source is an absence on record; say what was looked for.
        basis = sources or (i.note if i.note else "none on record")
        rows.append(
            f"| {label(i.name, i.description)} | {shown_value(i.name, i.value, i.unit)}{flag} "
            f"| {_date(i.time)} | {basis} |"
        )
    return rows


def _factor_line(f: Factor) -> str:
    verb = "added" if f.contribution >= 0 else "removed"
    points = abs(100 * f.contribution)
    when = f" on {_date(f.time)}" if f.time and f.name != "age_years" else ""
    return (
        f"- {label(f.name, f.description)} {shown_value(f.name, f.value, f.unit)}{when} {verb} "
        f"{points:.1f} points (reference {shown_value(f.name, f.baseline_value, f.unit)})"
    )


def output_label(name: str) -> str:
    """``risk_10y_cvd`` → ``10-year CVD risk``; other names are shown as they are."""
    parts = name.split("_")
    if len(parts) >= 3 and parts[0] == "risk" and parts[1].endswith("y"):
        what = " ".join(parts[2:])
        what = {"cvd": "CVD", "ascvd": "ASCVD", "hf": "heart failure"}.get(what, what)
        return f"{parts[1][:-1]}-year {what} risk"
    return name.replace("_", " ")


def factor_lines(a: Assessment, output: str) -> list[str]:
    """The top factors for one output, against the card's stated reference profile."""
    factors = a.factors_by_output.get(output, ())[:TOP_FACTORS]
    if not factors:
        return []
    baseline = a.model.card.baseline.description
    return [
        f"**What moved the {output_label(output)}** (exact Shapley values, percentage "
        f"points, against {baseline}: {pct(a.baseline_outputs[output])})",
        *(_factor_line(f) for f in factors),
    ]


def model_section(a: Assessment) -> list[str]:
    card = a.model.card
    return [
        "**Model**",
        f"{card.name} v{card.version} (sha256 `{a.model.sha256[:12]}`). {card.intended_use}",
        f"Population: {card.population}",
        f"Source: {card.source}",
        f"Validation: {card.validation}",
    ]


def missing_section(a: Assessment) -> list[str]:
    lines: list[str] = []
    for n in a.not_used:
        lines.append(
            f"- {label(n.name, n.description)}: {n.quality} — {n.reason or 'not available'}"
        )
    for s in a.stale:
        lines.append(
            f"- {label(s.name, s.description)}: from {_date(s.time)}, stale; used as recorded"
        )
    return (["**Missing or stale**", *lines]) if lines else []


def model_source(a: Assessment) -> Source:
    """The card's source: the model's name and version, as every risk card names it."""
    return Source(label=f"twin-cds · {a.model.card.name} v{a.model.card.version}")


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


def render_cards(
    service: ServiceDefinition,
    a: Assessment,
    *,
    patient_id: str,
    twin_version: int,
    launch_url: str,
) -> list[Card]:
    """The ascvd-risk cards for one PCE assessment: a result, or what kept us from one."""
    card_meta = a.model.card
    source = model_source(a)
    link = app_link(service, launch_url, patient_id, twin_version)

    if a.status == "not-applicable":
        # Outside the model's population a number would mislead; say nothing.
        return []
    if a.status != "computed":
        what = (
            "missing "
            + ", ".join(label(n.name, n.description) for n in a.not_used if _blocks(n.name, a))
            if a.status == "missing-inputs"
            else "value outside the model's range"
        )
        summary = f"10-year ASCVD risk not computed: {what}"
        detail = [
            "The risk was not computed: a number from incomplete or out-of-range "
            "inputs would not be the patient's.",
            "",
            *(f"- {p}" for p in a.problems),
            "",
            *missing_section(a),
            "",
            *input_rows(a.inputs),
            "",
            *model_section(a),
        ]
        return [
            Card(
                uuid=str(uuid.uuid4()),
                summary=_clip(summary),
                detail="\n".join(detail),
                indicator="info",
                source=source,
                links=[link],
            )
        ]

    output = card_meta.outputs[0].name
    risk = a.outputs[output]
    band = risk_band(risk)
    top = a.factors[:TOP_FACTORS]
    lead = ", ".join(
        f"{label(f.name, f.description).lower()} {'+' if f.contribution >= 0 else '-'}"
        f"{abs(100 * f.contribution):.1f}"
        for f in top[:2]
    )
    summary = f"10-year ASCVD risk {pct(risk)} ({band})" + (
        f"; main factors: {lead}" if lead else ""
    )
    detail = [
        f"**10-year ASCVD risk: {pct(risk)}** — {band} risk "
        "(2018 AHA/ACC cholesterol guideline categories).",
        "",
        "**The patient's inputs**",
        *input_rows(a.inputs),
        "",
        f"**What moved the risk** (exact Shapley values, percentage points, against "
        f"{card_meta.baseline.description}: {pct(a.baseline_outputs[output])})",
        *(_factor_line(f) for f in top),
        "",
        *missing_section(a),
        "",
        *model_section(a),
    ]
    return [
        Card(
            uuid=str(uuid.uuid4()),
            summary=_clip(summary),
            detail="\n".join(detail),
            indicator=_indicator(band),
            source=source,
            overrideReasons=list(OVERRIDE_REASONS),
            links=[link],
        )
    ]


def _blocks(name: str, a: Assessment) -> bool:
    return any(name in p for p in a.problems)


def _clip(summary: str) -> str:
    return summary if len(summary) < 140 else summary[:138] + "…"
