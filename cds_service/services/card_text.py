"""How the patient-view cards say things: one card shape, and the words every card shares.

`summary` (< 140 characters) says what to do in plain words; `detail` (<= 700
characters) gives the number, the two or three factors that moved it, what was missing
or too old, and one line of evidence. Units are written as people write them (mmHg,
mL/min/1.73 m2). The full inputs table, model card and Shapley waterfall are in the
clinician app behind the card's link; the audit record keeps everything.

The services' cards (`ascvd_cards`, `cardio_renal_cards`) are built from these words, so
the statin decision and the cardio-renal cards never word the same fact two ways.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from cds_service.http.cards import Card, Indicator, Link, Source, Suggestion
from cds_service.pipeline.patient_view import PatientView
from cds_service.pipeline.predict import Assessment, Factor
from cds_service.pipeline.render import OVERRIDE_REASONS, label
from cds_service.services.cardio_renal import ORDERABLE, order_suggestion
from onnx_models.errors import RangeViolation
from twin_engine.clinical.kidney import AcuteKidneyInjury, KidneyStatus
from twin_engine.clinical.staleness import limit_years
from twin_engine.clinical.statins import StatinExposure

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
ORDER_WORDS = {
    "lipids": "a lipid panel",
    "eGFR": "a creatinine",
    "urine albumin/creatinine": "a urine albumin/creatinine ratio",
}


def plain_unit(unit: str) -> str:
    return PLAIN_UNITS.get(unit, unit)


def plain_value(name: str, value: float, unit: str) -> str:
    if unit in ("1", "{yes/no}", "") and value in (0.0, 1.0):
        return "yes" if value == 1.0 else "no"
    number = f"{value:.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:.1f}"
    return f"{number} {plain_unit(unit)}".strip()


def year_of(t: datetime | None) -> str:
    return str(t.year) if t else "an unknown date"


def day_of(t: datetime | None) -> str:
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


def detail_text(required: list[str], optional: list[str], evidence: str) -> str:
    """Required lines, then optional ones while they fit, then the evidence line."""
    # Paragraphs: `detail` is GitHub-flavoured Markdown, where one newline joins lines.
    lines = [line for line in required if line]
    for line in (o for o in optional if o):
        if len("\n\n".join([*lines, line, evidence])) <= DETAIL_MAX:
            lines.append(line)
    text = "\n\n".join([*lines, evidence])
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def summary_text(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def make_card(
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
        summary=summary_text(summary),
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
        return f"{what} from {year_of(first.time)} {verb} too old ({limit})", what
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


def missing_words(a: Assessment) -> str:
    names = [words(n.name, n.description) for n in a.not_used]
    return "missing " + ", ".join(names) if names else "; ".join(a.problems)


def outside_ages(view: PatientView, a: Assessment) -> bool:
    """True when the patient's age is outside the model's: no number and no lab order."""
    spec = next((i for i in a.model.card.inputs if i.name == "age_years"), None)
    age = view.state.age_years
    return spec is not None and (age is None or not spec.min <= age <= spec.max)


def order_for(view: PatientView, a: Assessment, why: str) -> list[Suggestion]:
    names = tuple(n for n in view.lab_blockers(a) if n in ORDERABLE)
    return [order_suggestion(view.twin.patient_id, names, why)] if names else []


def inputs_line(a: Assessment) -> str:
    """The lipid and blood-pressure values a number used, with their dates."""
    shown = {i.name: i for i in a.inputs}
    parts = []
    tc, hdl = shown.get("total_cholesterol_mg_dl"), shown.get("hdl_cholesterol_mg_dl")
    if tc and hdl:
        parts.append(
            f"total cholesterol {tc.value:.0f} mg/dL, HDL {hdl.value:.0f} mg/dL ({day_of(tc.time)})"
        )
    sbp = shown.get("systolic_bp_mm_hg")
    if sbp:
        parts.append(f"systolic BP {sbp.value:.0f} mmHg ({day_of(sbp.time)})")
    return "Used: " + "; ".join(parts) + "." if parts else ""


def blocked_line(view: PatientView, a: Assessment) -> str:
    blocked = too_old_words(view, a)
    return f"No 10-year risk: {blocked[0]}." if blocked else ""


def not_computed_card(
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
        return make_card(
            f"{head}: {blocked[0]}; order {ORDER_WORDS[blocked[1]]}",
            detail_text(
                ["A risk from values this old or absent would not be the patient's today.", *lines],
                [],
                evidence,
            ),
            "info",
            source,
            link,
            order_for(view, a, order_why),
            decision=False,
        )
    if a.status == "out-of-range":
        said = "; ".join(range_words(v, equations) for v in a.violations)
        summary = f"{head}: {said}"
    elif a.status != "computed":
        summary = f"{head}: {missing_words(a)}"
    else:
        return None
    return make_card(
        summary, detail_text(lines, [], evidence), "info", source, link, decision=False
    )


def stale_vitals_line(a: Assessment) -> str:
    stale = list(a.stale)
    if not stale:
        return ""
    return (
        "Stale, used as recorded: "
        + ", ".join(
            f"{lower_first(label(i.name, i.description))} from {day_of(i.time)}" for i in stale
        )
        + "."
    )


def mg_dl(value: float) -> str:
    """Creatinine as laboratories print it: 0.97, 1.0, 3.1."""
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def aki_words(k: AcuteKidneyInjury) -> str:
    """'KDIGO stage 3: creatinine 3.1 mg/dL is 3.2x baseline 0.97' (card and app)."""
    return (
        f"KDIGO stage {k.stage}: creatinine {mg_dl(k.creatinine_mg_dl)} mg/dL is "
        f"{k.ratio:.1f}x baseline {mg_dl(k.baseline_mg_dl)}"
    )


def ckd_words(k: KidneyStatus) -> str:
    """'CKD G4 A3' (chronic) or 'G3a, not yet chronic' (card and app)."""
    stage = f"{k.g_category}{' ' + k.a_category if k.a_category else ''}"
    return f"CKD {stage}" if k.chronic else f"{stage}, not chronic (under 3 months)"


def statin_words(x: StatinExposure) -> str:
    """'atorvastatin 20 mg, moderate intensity' (card and app)."""
    intensity = f"{x.intensity} intensity" if x.intensity else "intensity not recognised"
    return f"{x.describe()}, {intensity}"
