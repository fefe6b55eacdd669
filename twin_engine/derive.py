"""Derived features of a twin as of a date, each with sources, time and quality.

Only data with a time on or before `as_of` is used, so a past recommendation can be
recomputed from a twin that has since grown.  A date `as_of` means the end of that day
(UTC); a naive datetime is taken as UTC.

For each quantity the *latest* value decides.  If it is implausible or in an unknown
unit, the feature says so (value None) instead of quietly falling back to an older
value: a card must show that the newest measurement could not be used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from twin_engine.clinical.staleness import STALE_AFTER
from twin_engine.codes import QUANTITY_LOINC, SMOKING_STATUS_LOINC, QuantityName
from twin_engine.concepts import Concept
from twin_engine.egfr import CKD_EPI_2021_MIN_AGE_YEARS, ckd_epi_2021
from twin_engine.features import Feature, Quality
from twin_engine.medications import MedicationClass
from twin_engine.ranges import AGE_RANGE
from twin_engine.twin import ConditionEntry, MedicationEntry, ObservationPoint, Twin
from twin_engine.units import canonical_unit

#: Feature name -> the timeline it reads (latest value decides).
QUANTITY_FEATURES: Final[Mapping[str, QuantityName]] = {
    "total_cholesterol_mg_dl": "total_cholesterol",
    "hdl_cholesterol_mg_dl": "hdl_cholesterol",
    "ldl_cholesterol_mg_dl": "ldl_cholesterol",
    "triglycerides_mg_dl": "triglycerides",
    "systolic_bp_mm_hg": "systolic_bp",
    "diastolic_bp_mm_hg": "diastolic_bp",
    "creatinine_mg_dl": "creatinine",
    "uacr_mg_g": "uacr",
    "hba1c_percent": "hba1c",
    "bmi_kg_m2": "bmi",
    "weight_kg": "weight",
    "height_cm": "height",
    "heart_rate_per_min": "heart_rate",
}

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "age_years",
    "female",
    "african_american",
    *QUANTITY_FEATURES,
    "egfr_ml_min_1_73m2",
    "treated_hypertension",
    "statin",
    "current_smoker",
    "diabetes",
    "clinical_ascvd",
    "heart_failure",
    "atrial_fibrillation",
    "cardiogenic_shock",
    "cardiovascular_disease_history",
    "prior_myocardial_infarction",
)

#: OMB race category "Black or African American" (CDC Race & Ethnicity code set).
OMB_BLACK_OR_AFRICAN_AMERICAN: Final = "2054-5"
#: Diagnostic threshold: A1C >= 6.5% (48 mmol/mol), ADA Standards of Care in
#: Diabetes-2024, section 2, Table 2.1 (Diabetes Care 2024;47(Suppl 1):S20).
HBA1C_DIABETES_PERCENT: Final = 6.5

_ACTIVE_STATEMENT_STATUS: Final = frozenset({"active"})
#: LOINC of eGFR by the race-free CKD-EPI 2021 creatinine equation.
EGFR_CKD_EPI_2021: Final = "98979-8"
_EGFR_UNIT: Final = "mL/min/{1.73_m2}"


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """All features of one twin as of one instant."""

    as_of: datetime
    features: Mapping[str, Feature]

    def get(self, name: str) -> Feature:
        try:
            return self.features[name]
        except KeyError:
            raise KeyError(f"no feature {name!r}; known: {', '.join(self.features)}") from None


@dataclass(frozen=True, slots=True)
class _Context:
    twin: Twin
    instant: datetime
    label: str

    @property
    def patient_source(self) -> str:
        return f"Patient/{self.twin.patient_id}"


def derive_features(twin: Twin, as_of: date | datetime) -> FeatureSet:
    """Every feature in FEATURE_NAMES, as of `as_of`."""
    ctx = _context(twin, as_of)
    features: dict[str, Feature] = {
        "age_years": _age(ctx),
        "female": _female(ctx),
        "african_american": _african_american(ctx),
    }
    for name, quantity in QUANTITY_FEATURES.items():
        features[name] = _latest(ctx, name, quantity)
    features["egfr_ml_min_1_73m2"] = _egfr(ctx, features["creatinine_mg_dl"])
    features["treated_hypertension"] = _treated_hypertension(ctx)
    features["statin"] = _on_class(ctx, "statin", "statin")
    features["current_smoker"] = _current_smoker(ctx)
    features["diabetes"] = _diabetes(ctx)
    features["clinical_ascvd"] = _clinical_ascvd(ctx)
    features["heart_failure"] = _active_condition(ctx, "heart_failure", "heart_failure")
    features["atrial_fibrillation"] = _active_condition(
        ctx, "atrial_fibrillation", "atrial_fibrillation"
    )
    features["cardiogenic_shock"] = _active_condition(ctx, "cardiogenic_shock", "cardiogenic_shock")
    history = features["clinical_ascvd"]
    features["cardiovascular_disease_history"] = Feature(
        "cardiovascular_disease_history",
        history.value,
        None,
        history.time,
        history.sources,
        history.quality,
        history.note,
    )
    features["prior_myocardial_infarction"] = _prior_mi(ctx)
    return FeatureSet(as_of=ctx.instant, features=features)


def _context(twin: Twin, as_of: date | datetime) -> _Context:
    if isinstance(as_of, datetime):
        instant = as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
        return _Context(twin, instant, instant.isoformat())
    return _Context(twin, datetime.combine(as_of, time.max, tzinfo=UTC), as_of.isoformat())


def _missing(name: str, unit: str | None, note: str) -> Feature:
    return Feature(name, None, unit, None, (), "missing", note)


def _completed_years(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _age_on(ctx: _Context, on: date) -> float | None:
    birth = ctx.twin.demographics.birth_date
    return float(_completed_years(birth, on)) if birth is not None else None


def _age(ctx: _Context) -> Feature:
    birth = ctx.twin.demographics.birth_date
    if birth is None:
        return _missing("age_years", "a", f"{ctx.patient_source} has no birthDate")
    years = _age_on(ctx, ctx.instant.date())
    assert years is not None  # noqa: S101  (birth is known)
    sources = (ctx.patient_source,)
    if not AGE_RANGE.contains(years):
        note = f"age {years:g} years from birthDate {birth.isoformat()} is implausible"
        return Feature("age_years", None, "a", ctx.instant, sources, "implausible", note)
    note = "completed years on the as-of date"
    deceased = ctx.twin.demographics.deceased_time
    if deceased is not None and deceased <= ctx.instant:
        note += f"; patient deceased on {deceased.date().isoformat()}"
    return Feature("age_years", years, "a", ctx.instant, sources, "ok", note)


def _female(ctx: _Context) -> Feature:
    gender = ctx.twin.demographics.gender
    sources = (ctx.patient_source,)
    if gender in ("female", "male"):
        value = 1.0 if gender == "female" else 0.0
        return Feature("female", value, None, None, sources, "ok", f"gender {gender}")
    return _missing(
        "female",
        None,
        f"{ctx.patient_source} gender is {gender or 'absent'}; sex-specific equations need "
        "female or male",
    )


def _african_american(ctx: _Context) -> Feature:
    demo = ctx.twin.demographics
    if not demo.race_recorded:
        return _missing(
            "african_american", None, f"{ctx.patient_source} has no US Core race extension"
        )
    value = 1.0 if OMB_BLACK_OR_AFRICAN_AMERICAN in demo.race_omb else 0.0
    note = "OMB race categories: " + (", ".join(demo.race_omb) or "none coded")
    return Feature("african_american", value, None, None, (ctx.patient_source,), "ok", note)


def _codes_text(quantity: QuantityName) -> str:
    return " or ".join(QUANTITY_LOINC[quantity])


def _stale(ctx: _Context, key: str, moment: datetime) -> bool:
    return ctx.instant - moment > STALE_AFTER[key]


def _latest_point(ctx: _Context, quantity: QuantityName) -> ObservationPoint | None:
    latest: ObservationPoint | None = None
    for point in ctx.twin.observations.get(quantity, ()):
        if point.time > ctx.instant:
            break  # points are sorted by time
        latest = point
    return latest


def _latest(ctx: _Context, name: str, quantity: QuantityName) -> Feature:
    unit = canonical_unit(quantity)
    point = _latest_point(ctx, quantity)
    if point is None:
        return _missing(
            name,
            unit,
            f"no Observation with LOINC {_codes_text(quantity)} on or before {ctx.label}",
        )
    sources = (point.source,)
    if point.quality == "unit_unknown":
        return Feature(name, None, point.unit, point.time, sources, "unit_unknown", point.note)
    if point.quality == "implausible":
        return Feature(name, None, unit, point.time, sources, "implausible", point.note)
    return _timed(ctx, name, point.value, unit, point.time, sources, quantity, "")


def _timed(
    ctx: _Context,
    name: str,
    value: float | None,
    unit: str | None,
    moment: datetime,
    sources: tuple[str, ...],
    stale_key: str,
    note: str,
) -> Feature:
    quality: Quality = "ok"
    if _stale(ctx, stale_key, moment):
        quality = "stale"
        days = STALE_AFTER[stale_key].days
        stale_note = f"latest value is from {moment.date().isoformat()}, older than {days} days"
        note = f"{note}; {stale_note}" if note else stale_note
    return Feature(name, value, unit, moment, sources, quality, note)


def _egfr(ctx: _Context, creatinine: Feature) -> Feature:
    name = "egfr_ml_min_1_73m2"
    measured = _latest_point(ctx, "egfr")
    # Only a race-free CKD-EPI 2021 result (LOINC 98979-8) stands in for our own
    # computation: MDRD and CKD-EPI 2009 values carry a race coefficient, and the
    # equations downstream (PREVENT, KFRE use) expect CKD-EPI 2021 (Inker, NEJM 2021).
    measured_usable = (
        measured is not None and measured.quality == "ok" and measured.loinc == EGFR_CKD_EPI_2021
    )
    if (
        measured is not None
        and measured_usable
        and (creatinine.time is None or measured.time >= creatinine.time)
    ):
        note = f"measured eGFR (LOINC {measured.loinc})"
        return _timed(
            ctx, name, measured.value, _EGFR_UNIT, measured.time, (measured.source,), "egfr", note
        )
    skipped = ""
    if measured is not None and not measured_usable:
        why = (
            measured.note
            if measured.quality != "ok"
            else f"LOINC {measured.loinc} is not CKD-EPI 2021 (98979-8)"
        )
        skipped = f"; latest measured eGFR not used: {why}"
    if not creatinine.usable or creatinine.value is None or creatinine.time is None:
        return _missing(
            name,
            _EGFR_UNIT,
            f"no usable eGFR (LOINC {_codes_text('egfr')}) or creatinine on or before "
            f"{ctx.label} ({creatinine.quality}: {creatinine.note}){skipped}",
        )
    gender = ctx.twin.demographics.gender
    age = _age_on(ctx, creatinine.time.date())
    if gender not in ("female", "male") or age is None:
        return _missing(
            name,
            _EGFR_UNIT,
            f"CKD-EPI 2021 needs age and sex; {ctx.patient_source} lacks "
            f"{'birthDate' if age is None else 'a female/male gender'}{skipped}",
        )
    if age < CKD_EPI_2021_MIN_AGE_YEARS:
        return _missing(
            name, _EGFR_UNIT, f"CKD-EPI 2021 is for adults; age {age:g} years at the creatinine"
        )
    value = ckd_epi_2021(creatinine.value, age, female=gender == "female")
    note = (
        f"computed by CKD-EPI 2021 (Inker et al., NEJM 2021) from creatinine "
        f"{creatinine.value:g} mg/dL, age {age:g}, {gender}{skipped}"
    )
    sources = (*creatinine.sources, ctx.patient_source)
    return _timed(ctx, name, value, _EGFR_UNIT, creatinine.time, sources, "creatinine", note)


def medication_active(entry: MedicationEntry, instant: datetime) -> bool:
    """Whether a medication entry is in effect at `instant`.

    A MedicationRequest counts while its status is active and it was authored by then.
    A MedicationStatement or MedicationAdministration counts when active/in-progress and
    started by then (not yet ended), or completed with an effective period covering it.
    The status is today's, so for a past `as_of` a since-stopped request is not counted:
    FHIR R4 does not record when it stopped.
    """
    if entry.kind == "MedicationRequest":
        return entry.status == "active" and (entry.authored is None or entry.authored <= instant)
    start, end = entry.effective_start, entry.effective_end
    started = start is None or start <= instant
    if entry.status in ("active", "in-progress"):
        # A single effectiveDateTime (start == end) only marks when it was asserted.
        return started and (end is None or end >= instant or end == start)
    if entry.status == "completed":
        return start is not None and end is not None and start <= instant <= end
    return False


def _treated_hypertension(ctx: _Context) -> Feature:
    name = "treated_hypertension"
    active = [
        m
        for m in ctx.twin.medications.get("antihypertensive", ())
        if medication_active(m, ctx.instant)
    ]
    if not active:
        return Feature(
            name, 0.0, None, None, (), "ok", f"no active antihypertensive medication on {ctx.label}"
        )
    times = [m.authored or m.effective_start for m in active]
    latest = max((t for t in times if t is not None), default=None)
    names = "; ".join(f"{m.display or m.rxnorm} ({m.source}, {m.note})" for m in active)
    sources = tuple(m.source for m in active)
    return Feature(name, 1.0, None, latest, sources, "ok", f"active antihypertensive: {names}")


def _on_class(ctx: _Context, name: str, medication_class: MedicationClass) -> Feature:
    active = [
        m
        for m in ctx.twin.medications.get(medication_class, ())
        if medication_active(m, ctx.instant)
    ]
    if not active:
        note = f"no active {medication_class} medication on {ctx.label}"
        return Feature(name, 0.0, None, None, (), "ok", note)
    times = [m.authored or m.effective_start for m in active]
    latest = max((t for t in times if t is not None), default=None)
    names = "; ".join(f"{m.display or m.rxnorm} ({m.source})" for m in active)
    sources = tuple(m.source for m in active)
    return Feature(name, 1.0, None, latest, sources, "ok", f"active {medication_class}: {names}")


#: Fourth Universal Definition of MI (Thygesen et al., Circulation 2018;138:e618): an MI
#: more than 28 days after an incident MI is a recurrent MI, so a prior MI is one whose
#: onset lies more than 28 days before the date.
RECURRENT_MI_AFTER: Final = timedelta(days=28)


def _active_on(ctx: _Context, concept: Concept) -> Iterator[ConditionEntry]:
    """The concept's conditions active on the date: onset (else recorded) by then, not abated."""
    for entry in ctx.twin.conditions.get(concept, ()):
        onset = entry.onset or entry.recorded
        if not entry.active or (onset is not None and onset > ctx.instant):
            continue
        if entry.abatement is not None and entry.abatement <= ctx.instant:
            continue
        yield entry


def _active_condition(ctx: _Context, name: str, concept: Concept) -> Feature:
    """1.0 when a condition of the concept is active on the date (onset by then, not abated)."""
    for entry in _active_on(ctx, concept):
        onset = entry.onset or entry.recorded
        note = f"active {concept.replace('_', ' ')}: {entry.system} {entry.code}"
        return Feature(name, 1.0, None, onset, (entry.source,), "ok", note)
    note = f"no active {concept.replace('_', ' ')} condition recorded on {ctx.label}"
    return Feature(name, 0.0, None, None, (), "ok", note)


def _prior_mi(ctx: _Context) -> Feature:
    name = "prior_myocardial_infarction"
    cutoff = ctx.instant - RECURRENT_MI_AFTER
    for entry in ctx.twin.conditions.get("myocardial_infarction", ()):
        onset = entry.onset or entry.recorded
        if onset is not None and onset <= cutoff:
            note = f"MI recorded {onset.date().isoformat()}: {entry.system} {entry.code}"
            return Feature(name, 1.0, None, onset, (entry.source,), "ok", note)
    note = f"no MI with onset more than 28 days before {ctx.label}"
    return Feature(name, 0.0, None, None, (), "ok", note)


def _clinical_ascvd(ctx: _Context) -> Feature:
    """History of clinical ASCVD (MI, angina, coronary disease, stroke, PAD...).

    A resolved MI is still clinical ASCVD: primary-prevention risk equations such as
    the Pooled Cohort Equations do not apply to these patients (Goff et al. 2013,
    Circulation 2014;129:S49, population), so any recorded onset counts, active or not.
    """
    name = "clinical_ascvd"
    for entry in ctx.twin.conditions.get("ascvd", ()):
        onset = entry.onset or entry.recorded
        if onset is not None and onset > ctx.instant:
            continue
        note = f"clinical ASCVD recorded: {entry.system} {entry.code} {entry.display or ''}"
        return Feature(name, 1.0, None, onset, (entry.source,), "ok", note.strip())
    return Feature(
        name, 0.0, None, None, (), "ok", f"no ASCVD condition recorded on or before {ctx.label}"
    )


def _current_smoker(ctx: _Context) -> Feature:
    name = "current_smoker"
    latest = None
    for entry in ctx.twin.smoking:
        if entry.time > ctx.instant:
            break
        latest = entry
    if latest is None:
        return _missing(
            name, None, f"no Observation with LOINC {SMOKING_STATUS_LOINC} on or before {ctx.label}"
        )
    code_text = f"{latest.code} ({latest.display or 'no display'})"
    if latest.status is None or latest.status == "unknown":
        return Feature(
            name,
            None,
            None,
            latest.time,
            (latest.source,),
            "missing",
            f"{latest.source} smoking status {code_text} is not current/former/never",
        )
    value = 1.0 if latest.status == "current" else 0.0
    note = f"{latest.status} smoker: SNOMED {code_text}"
    return _timed(ctx, name, value, None, latest.time, (latest.source,), "smoking", note)


def _diabetes(ctx: _Context) -> Feature:
    name = "diabetes"
    for entry in _active_on(ctx, "diabetes"):
        onset = entry.onset or entry.recorded
        note = f"active diabetes condition ({entry.system} {entry.code} {entry.display or ''})"
        return Feature(name, 1.0, None, onset, (entry.source,), "ok", note.replace(" )", ")"))
    # ADA Standards of Care 2024, section 2: without unequivocal hyperglycaemia the
    # diagnosis needs two abnormal results, so one old HbA1c >= 6.5% is not enough.
    high = [
        point
        for point in ctx.twin.observations.get("hba1c", ())
        if point.time <= ctx.instant
        and point.quality == "ok"
        and point.value is not None
        and point.value >= HBA1C_DIABETES_PERCENT
    ]
    if len(high) >= 2:
        values = ", ".join(f"{p.value:g}% on {p.time.date().isoformat()}" for p in high[-2:])
        note = (
            f"two HbA1c >= {HBA1C_DIABETES_PERCENT:g}% ({values}; ADA Standards of Care "
            "2024, section 2, Table 2.1); no diabetes condition recorded"
        )
        sources = tuple(p.source for p in high[-2:])
        return Feature(name, 1.0, None, high[-1].time, sources, "ok", note)
    if len(high) == 1:
        only = high[0]
        note = (
            f"one HbA1c {only.value:g}% on {only.time.date().isoformat()} >= "
            f"{HBA1C_DIABETES_PERCENT:g}% is not a diagnosis without a second result (ADA "
            "2024); no diabetes condition recorded"
        )
        return Feature(name, 0.0, None, only.time, (only.source,), "ok", note)
    return Feature(
        name,
        0.0,
        None,
        None,
        (),
        "ok",
        f"no diabetes condition recorded and no HbA1c >= {HBA1C_DIABETES_PERCENT:g}% "
        f"on or before {ctx.label}",
    )
