"""The twin panel's JSON: the patient banner, the timelines with the derived clinical
state drawn on them, the state's lines and the twin's issues, worded as the cards word
them (the same functions: ``card_text``' words, the kidney rules' eGFR series).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.services.card_text import aki_words, ckd_words, statin_words
from cds_service.services.cardio_renal import SBP_TARGET_MM_HG
from smart_app.patient_data import Computed
from smart_app.schema import ApiModel
from twin_engine.clinical.kidney import CKD_EGFR_BELOW, aki_episodes, egfr_series
from twin_engine.clinical.state import ClinicalState
from twin_engine.codes import QuantityName
from twin_engine.twin import ObservationPoint, Twin
from twin_engine.units import canonical_unit


class Banner(ApiModel):
    id: str
    name: str
    gender: str | None
    birth_date: str | None
    age_years: int | None
    identifier: str | None


class Point(ApiModel):
    t: str
    v: float
    source: str
    quality: str


class Series(ApiModel):
    name: str
    points: list[Point]


class Reference(ApiModel):
    """A horizontal line: a target (high) or a threshold (low)."""

    low: float | None
    high: float | None
    label: str


class Band(ApiModel):
    """A period drawn behind a chart: a CKD stage, a statin course."""

    start: str | None
    end: str | None
    label: str
    kind: str


class Event(ApiModel):
    """A dated mark on a chart: an AKI episode."""

    t: str
    label: str
    text: str
    kind: str


class Chart(ApiModel):
    id: str
    title: str
    unit: str
    series: list[Series]
    reference: Reference | None
    bands: list[Band]
    events: list[Event]


class StateLine(ApiModel):
    label: str
    value: str


class TwinVersion(ApiModel):
    version: int
    content_hash: str
    latest_version: int
    requested_version: int | None
    as_of: str
    note: str | None


class TwinPanel(ApiModel):
    """``GET /app/api/twin``."""

    patient: Banner
    twin: TwinVersion
    timelines: list[Chart]
    clinical_state: list[StateLine]
    issues: list[str]


def twin_panel(c: Computed, now: datetime) -> TwinPanel:
    ctx = c.twin
    return TwinPanel(
        patient=banner(ctx.data.patient, ctx.twin, now),
        twin=TwinVersion(
            version=ctx.version,
            content_hash=ctx.content_hash,
            latest_version=ctx.latest_version,
            requested_version=ctx.requested_version,
            as_of=c.today.isoformat(),
            note=ctx.note,
        ),
        timelines=timelines(ctx.twin, c.state),
        clinical_state=clinical_state_view(c.state),
        issues=[*ctx.data.problems, *issues(ctx.twin)],
    )


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


def banner(patient: Mapping[str, Any] | None, twin: Twin, today: datetime) -> Banner:
    birth = twin.demographics.birth_date
    age = None
    if birth is not None:
        d = today.date()
        age = d.year - birth.year - ((d.month, d.day) < (birth.month, birth.day))
    return Banner(
        id=twin.patient_id,
        name=_name(patient or {}),
        gender=twin.demographics.gender,
        birth_date=birth.isoformat() if birth else None,
        age_years=age,
        identifier=_identifier(patient or {}),
    )


# --- timelines -------------------------------------------------------------------------

#: (chart id, title, [(series name, twin quantity)], reference line)
_CHARTS: tuple[tuple[str, str, tuple[tuple[str, QuantityName], ...], Reference | None], ...] = (
    (
        "bp",
        "Blood pressure",
        (("Systolic", "systolic_bp"), ("Diastolic", "diastolic_bp")),
        Reference(low=None, high=SBP_TARGET_MM_HG, label=f"SBP target {SBP_TARGET_MM_HG:.0f}"),
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
        Reference(low=CKD_EGFR_BELOW, high=None, label="CKD G3 below 60"),
    ),
    ("creatinine", "Creatinine", (("Creatinine", "creatinine"),), None),
    ("vancomycin", "Vancomycin levels", (("Vancomycin", "vancomycin"),), None),
)


def _point(p: ObservationPoint, value: float) -> Point:
    return Point(t=p.time.isoformat(), v=value, source=p.source, quality=p.quality)


def _day(t: datetime | None) -> str:
    return t.date().isoformat() if t else "an unknown date"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


@dataclass(frozen=True, slots=True)
class _Overlay:
    """What the clinical rules add to one chart."""

    series: tuple[Series, ...] = ()
    bands: tuple[Band, ...] = ()
    events: tuple[Event, ...] = ()


def _derived(twin: Twin, state: ClinicalState) -> dict[str, _Overlay]:
    """Per chart: derived series, treatment bands and events from the clinical rules,
    worded as the cards word them (the same functions)."""
    instant = state.as_of
    egfr = [
        Point(t=e.time.isoformat(), v=round(e.value, 1), source=e.source, quality="ok")
        for e in egfr_series(twin, instant)
    ]
    kidney_bands = []
    k = state.kidney
    if k.abnormal_since is not None and k.egfr is not None:
        kidney_bands.append(
            Band(
                start=k.abnormal_since.isoformat(),
                end=k.egfr.time.isoformat(),
                label=ckd_words(k),
                kind="ckd" if k.chronic else "not-chronic",
            )
        )
    return {
        "egfr": _Overlay(
            series=(Series(name="eGFR, CKD-EPI 2021 (as the cards use it)", points=egfr),),
            bands=tuple(kidney_bands),
        ),
        "creatinine": _Overlay(
            events=tuple(
                Event(
                    t=a.time.isoformat(),
                    label=f"AKI stage {a.stage}",
                    text=f"Acute kidney injury, {aki_words(a)}",
                    kind="aki",
                )
                for a in aki_episodes(twin, instant)
            ),
        ),
        "lipids": _Overlay(
            bands=tuple(
                Band(
                    start=_iso(x.start),
                    end=_iso(x.stop) if not x.ongoing else None,
                    label=statin_words(x),
                    kind="statin",
                )
                for x in state.statins
                if x.start is not None
            ),
        ),
    }


def clinical_state_view(state: ClinicalState) -> list[StateLine]:
    """The derived state the cards act on, one line each, in the cards' words."""
    rows: list[StateLine] = []
    if state.aki is not None:
        rows.append(StateLine(label="Acute kidney injury", value=aki_words(state.aki)))
    k = state.kidney
    if k.g_category is not None and k.egfr is not None:
        since = (
            f", abnormal since {k.abnormal_since.date().isoformat()}" if k.abnormal_since else ""
        )
        rows.append(
            StateLine(
                label="Kidney function",
                value=f"{ckd_words(k)}: eGFR {k.egfr.value:.0f} mL/min/1.73 m2 "
                f"({k.egfr.time.date().isoformat()}){since}",
            )
        )
    current = state.current_statin
    rows.append(
        StateLine(
            label="Statin",
            value=f"{statin_words(current)} since {_day(current.start)}"
            if current
            else ("none now" if state.statins else "none on record"),
        )
    )
    if state.pretreatment_lipids is not None:
        p = state.pretreatment_lipids
        rows.append(
            StateLine(
                label="Lipids before the statin",
                value=f"total {p.total_mg_dl:.0f}, HDL {p.hdl_mg_dl:.0f} mg/dL ({_day(p.time)})",
            )
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
                StateLine(label=label_text, value=f"{finding.what} ({when}, {finding.source})")
            )
    return rows


def timelines(twin: Twin, state: ClinicalState | None = None) -> list[Chart]:
    """One chart per clinical quantity group, in the twin's canonical units, with the
    derived clinical state drawn on it (eGFR as the cards compute it, AKI episodes,
    CKD stage, statin periods) when `state` is given.

    A value in an unknown unit is not drawn: on an axis in another unit it would be a
    wrong number. The twin's issues list names it instead.
    """
    derived = _derived(twin, state) if state is not None else {}
    charts = []
    for chart_id, title, series, reference in _CHARTS:
        overlay = derived.get(chart_id, _Overlay())
        measured = [
            Series(
                name=name,
                points=[
                    _point(p, p.value)
                    for p in twin.observations.get(q, ())
                    if p.value is not None and p.quality != "unit_unknown"
                ],
            )
            for name, q in series
        ]
        charts.append(
            Chart(
                id=chart_id,
                title=title,
                unit=canonical_unit(series[0][1]),
                series=[*measured, *overlay.series],
                reference=reference,
                bands=list(overlay.bands),
                events=list(overlay.events),
            )
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
