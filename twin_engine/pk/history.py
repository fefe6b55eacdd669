"""Vancomycin dose history, levels and covariates from FHIR R4 resources (plain dicts).

What is read, and why:
* MedicationAdministration for vancomycin (RxNorm ingredient 11124 on the medication code, a
  referenced/contained Medication, or "vancomycin" in its text): dosage.dose in mg or g; the
  infusion from effectivePeriod start/end, or effectiveDateTime with dosage.rateRatio /
  rateQuantity in mg per time. Oral vancomycin (route SNOMED 26643006) is not absorbed and is
  skipped. Statuses entered-in-error and not-done are skipped.
* MedicationRequest, only when no administration is recorded: dosageInstruction timing
  repeat period/periodUnit from boundsPeriod.start (to boundsPeriod.end or the as-of time),
  doseAndRate doseQuantity, duration from repeat.duration or the rate. Planned doses are
  assumed given; the source says so.
* Levels: LOINC 20578-1 (any), 4092-3 (trough), 4090-7 (peak) in mg/L or ug/mL (1 ug/mL =
  1 mg/L, the same mass concentration; docs/clinical.md lists mg/L).
* Weight LOINC 29463-7 (kg, g, lb); serum creatinine 2160-0 / 38483-4 (mg/dL, or umol/L / 88.4,
  KDIGO 2012); age and sex from Patient.
* Dialysis: Condition or Procedure coded ICD-10-CM Z99.2 (dependence on renal dialysis),
  Z49.x (encounter for dialysis), Z91.15 (noncompliance with dialysis), or SNOMED 108241001
  (dialysis procedure), 265764009 (renal dialysis), 302497006 (hemodialysis), 105502003
  (dependence on renal dialysis). An active Condition, or a Procedure in the 30 days before
  the as-of time, says yes; a resolved/inactive or refuted Condition says no. N18.6 (ESRD)
  alone is not read as dialysis: it is noted, and the status stays unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from twin_engine.pk.errors import (
    DoseRecordError,
    ImplausibleLevelError,
    MissingCovariateError,
)
from twin_engine.pk.types import DoseEvent, LevelKind, LevelObservation, Sex

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

VANCOMYCIN_RXNORM: Final = "11124"  # docs/clinical.md: vancomycin ingredient
ORAL_ROUTE_SNOMED: Final = "26643006"  # SNOMED CT "Oral route"
LEVEL_KINDS: Final[Mapping[str, LevelKind]] = {
    "4092-3": "trough",
    "4090-7": "peak",
    "20578-1": "random",
}
# 1 ug/mL = 1 mg/L (same mass per volume).
LEVEL_UNITS: Final = frozenset({"mg/l", "ug/ml", "µg/ml", "mcg/ml"})
# Implausible above 150 mg/L (the issue; far above any peak after a 3 g dose in an adult).
MAX_LEVEL_MG_L: Final = 150.0
WEIGHT_LOINC: Final = frozenset({"29463-7"})
CREATININE_LOINC: Final = frozenset({"2160-0", "38483-4"})
# mg/dL = umol/L / 88.4 (creatinine 113.12 g/mol; KDIGO 2012, as twin_engine.units).
CREATININE_UMOL_PER_MG_DL: Final = 88.4
LB_KG: Final = 0.45359237  # international avoirdupois pound
DIALYSIS_ICD10: Final = frozenset(
    {"Z99.2", "Z49.01", "Z49.02", "Z49.31", "Z49.32", "Z49.0", "Z49.3", "Z91.15"}
)
DIALYSIS_SNOMED: Final = frozenset({"108241001", "265764009", "302497006", "105502003"})
ESRD_ICD10: Final = "N18.6"
RECENT_PROCEDURE: Final = timedelta(days=30)
_TIME_UNITS_H: Final[Mapping[str, float]] = {
    "h": 1.0,
    "hr": 1.0,
    "hour": 1.0,
    "hours": 1.0,
    "min": 1.0 / 60.0,
    "d": 24.0,
    "day": 24.0,
}


@dataclass(frozen=True, slots=True)
class Measured:
    """One covariate value with its source and time."""

    value: float
    time: datetime
    source: str


@dataclass(frozen=True, slots=True)
class DialysisEvidence:
    """Recorded dialysis status: True, False, or None (unknown), and why."""

    status: bool | None
    source: str
    note: str


@dataclass(frozen=True, slots=True)
class PatientHistory:
    """Everything the dosing core reads from the resources, as of a time."""

    patient: str
    age: float | None
    sex: Sex | None
    weight: Measured | None
    creatinine: Measured | None
    dialysis: DialysisEvidence
    doses: tuple[DoseEvent, ...]
    levels: tuple[LevelObservation, ...]
    notes: tuple[str, ...]


def _ref(res: Mapping[str, Any]) -> str:
    return f"{res.get('resourceType', 'Resource')}/{res.get('id', '?')}"


def parse_time(text: object, where: str) -> datetime:
    """FHIR dateTime to an aware datetime (dates and naive times taken as UTC)."""
    if not isinstance(text, str) or not text:
        raise DoseRecordError(f"{where} has no time")
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DoseRecordError(f"{where} has an unreadable time {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _codings(concept: object) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding", []) or [] if isinstance(c, Mapping)]


def _texts(concept: object) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    texts = [str(c.get("display", "")) for c in _codings(concept)]
    return [*texts, str(concept.get("text", ""))]


def _has_code(concept: object, system: str, codes: Iterable[str]) -> str | None:
    wanted = set(codes)
    for c in _codings(concept):
        if c.get("system") == system and str(c.get("code")) in wanted:
            return str(c.get("code"))
    return None


def _is_vancomycin(concept: object) -> bool:
    if _has_code(concept, RXNORM, {VANCOMYCIN_RXNORM}):
        return True
    return any("vancomycin" in t.lower() for t in _texts(concept))


def _medication_concept(
    res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> object:
    if "medicationCodeableConcept" in res:
        return res["medicationCodeableConcept"]
    ref = str((res.get("medicationReference") or {}).get("reference", ""))
    if ref.startswith("#"):
        for contained in res.get("contained", []) or []:
            if contained.get("id") == ref[1:]:
                return contained.get("code")
    med = medications.get(ref) or medications.get(ref.split("/")[-1])
    if med is None:
        return None
    # A product whose ingredient is vancomycin counts (e.g. a branded or mixed bag).
    for ingredient in med.get("ingredient", []) or []:
        if _is_vancomycin(ingredient.get("itemCodeableConcept")):
            return ingredient.get("itemCodeableConcept")
    return med.get("code")


def _amount_mg(quantity: object, where: str) -> float:
    if not isinstance(quantity, Mapping) or quantity.get("value") is None:
        raise DoseRecordError(f"{where} has no dose amount; the dose history is incomplete")
    unit = str(quantity.get("code") or quantity.get("unit") or "").strip().lower()
    value = float(quantity["value"])
    if unit == "mg":
        return value
    if unit == "g":
        return value * 1000.0
    raise DoseRecordError(f"{where} gives the dose in {unit or 'no unit'!r}, not mg or g")


def _rate_mg_h(dosage: Mapping[str, Any], where: str) -> float | None:
    ratio = dosage.get("rateRatio")
    if isinstance(ratio, Mapping):
        mg = _amount_mg(ratio.get("numerator"), where)
        den = ratio.get("denominator") or {}
        unit = str(den.get("code") or den.get("unit") or "h").lower()
        hours = float(den.get("value", 1.0)) * _TIME_UNITS_H.get(unit, float("nan"))
        return mg / hours if hours > 0 else None
    quantity = dosage.get("rateQuantity")
    if isinstance(quantity, Mapping):
        unit = str(quantity.get("code") or quantity.get("unit") or "").lower()
        factors = {"mg/h": 1.0, "mg/hr": 1.0, "mg/min": 60.0, "g/h": 1000.0}
        if unit in factors:
            return float(quantity["value"]) * factors[unit]
        raise DoseRecordError(f"{where} gives the infusion rate in {unit!r}; mg/h needed")
    return None


def _is_oral(dosage: Mapping[str, Any]) -> bool:
    route = dosage.get("route")
    return bool(_has_code(route, SNOMED, {ORAL_ROUTE_SNOMED})) or any(
        t.strip().lower() in ("oral", "po", "by mouth") for t in _texts(route)
    )


def _administration(
    res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> DoseEvent | None:
    where = _ref(res)
    if res.get("status") in ("entered-in-error", "not-done"):
        return None
    if not _is_vancomycin(_medication_concept(res, medications)):
        return None
    dosage = res.get("dosage") or {}
    if _is_oral(dosage):
        return None
    amount = _amount_mg(dosage.get("dose"), where)
    period = res.get("effectivePeriod")
    if isinstance(period, Mapping) and period.get("start") and period.get("end"):
        start = parse_time(period["start"], where)
        hours = (parse_time(period["end"], where) - start).total_seconds() / 3600.0
    else:
        when = res.get("effectiveDateTime") or (period or {}).get("start")
        start = parse_time(when, where)
        rate = _rate_mg_h(dosage, where)
        if rate is None:
            raise DoseRecordError(
                f"{where} has a start time but neither an end time nor an infusion rate; "
                "the infusion duration is unknown"
            )
        hours = amount / rate
    if hours <= 0:
        raise DoseRecordError(f"{where} has an infusion duration of {hours:g} h")
    return DoseEvent(start=start, duration_h=hours, amount_mg=amount, source=where)


def _request_doses(res: Mapping[str, Any], as_of: datetime) -> list[DoseEvent]:
    where = _ref(res)
    out: list[DoseEvent] = []
    for instruction in res.get("dosageInstruction", []) or []:
        if _is_oral(instruction):
            continue
        repeat = ((instruction.get("timing") or {}).get("repeat")) or {}
        bounds = repeat.get("boundsPeriod") or {}
        if not bounds.get("start") or not repeat.get("period"):
            raise DoseRecordError(
                f"{where} has no timing.repeat.boundsPeriod.start or period; "
                "planned dose times unknown"
            )
        unit = str(repeat.get("periodUnit", "h"))
        interval_h = float(repeat["period"]) * _TIME_UNITS_H.get(unit, float("nan"))
        dose_rate = (instruction.get("doseAndRate") or [{}])[0]
        amount = _amount_mg(dose_rate.get("doseQuantity"), where)
        if repeat.get("duration"):
            du = str(repeat.get("durationUnit", "h"))
            hours = float(repeat["duration"]) * _TIME_UNITS_H.get(du, float("nan"))
        else:
            rate = _rate_mg_h(dose_rate, where)
            if rate is None:
                raise DoseRecordError(
                    f"{where} has neither timing.repeat.duration nor a rate; "
                    "the infusion duration is unknown"
                )
            hours = amount / rate
        if not (interval_h > 0 and hours > 0):
            raise DoseRecordError(f"{where} has an unusable period or duration")
        start = parse_time(bounds["start"], where)
        end = min(as_of, parse_time(bounds["end"], where)) if bounds.get("end") else as_of
        count = repeat.get("count")
        k = 0
        while start + timedelta(hours=k * interval_h) <= end and (count is None or k < count):
            out.append(
                DoseEvent(
                    start=start + timedelta(hours=k * interval_h),
                    duration_h=hours,
                    amount_mg=amount,
                    source=f"{where} (planned dose {k + 1}, assumed given)",
                )
            )
            k += 1
    return out


def _observation_time(res: Mapping[str, Any]) -> datetime | None:
    when = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
    return parse_time(when, _ref(res)) if when else None


def _level(res: Mapping[str, Any], code: str) -> LevelObservation | None:
    where = _ref(res)
    when = _observation_time(res)
    if when is None:
        raise ImplausibleLevelError(f"{where} (vancomycin level) has no collection time")
    q = res.get("valueQuantity")
    if not isinstance(q, Mapping) or q.get("value") is None:
        raise ImplausibleLevelError(f"{where} (vancomycin level) has no valueQuantity")
    if q.get("comparator"):
        raise ImplausibleLevelError(
            f"{where} (vancomycin level) is censored ({q['comparator']}{q['value']}); "
            "a censored level cannot be fitted"
        )
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    if unit not in LEVEL_UNITS:
        raise ImplausibleLevelError(
            f"{where} (vancomycin level) is in {unit or 'no unit'!r}, not mg/L or ug/mL"
        )
    value = float(q["value"])
    if not 0.0 < value <= MAX_LEVEL_MG_L:
        raise ImplausibleLevelError(
            f"{where} (vancomycin level) of {value:g} mg/L is outside the plausible range "
            f"(0, {MAX_LEVEL_MG_L:g}] mg/L"
        )
    return LevelObservation(time=when, value_mg_l=value, kind=LEVEL_KINDS[code], source=where)


def _weight_kg(q: Mapping[str, Any]) -> float | None:
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    value = float(q["value"])
    return {"kg": value, "g": value / 1000.0, "[lb_av]": value * LB_KG, "lb": value * LB_KG}.get(
        unit
    )


def _creatinine_mg_dl(q: Mapping[str, Any]) -> float | None:
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    value = float(q["value"])
    if unit == "mg/dl":
        return value
    if unit in ("umol/l", "µmol/l", "μmol/l"):
        return value / CREATININE_UMOL_PER_MG_DL
    return None


def _latest(found: list[Measured]) -> Measured | None:
    return max(found, key=lambda m: m.time) if found else None


def _dialysis(resources: Sequence[Mapping[str, Any]], as_of: datetime) -> DialysisEvidence:
    yes: list[str] = []
    no: list[str] = []
    esrd: list[str] = []
    for res in resources:
        kind = res.get("resourceType")
        if kind not in ("Condition", "Procedure"):
            continue
        code = res.get("code")
        hit = _has_code(code, ICD10CM, DIALYSIS_ICD10) or _has_code(code, SNOMED, DIALYSIS_SNOMED)
        if hit is None:
            if _has_code(code, ICD10CM, {ESRD_ICD10}):
                esrd.append(_ref(res))
            continue
        if kind == "Condition":
            verification = [c.get("code") for c in _codings(res.get("verificationStatus"))]
            clinical = [c.get("code") for c in _codings(res.get("clinicalStatus"))]
            if "entered-in-error" in verification:
                continue
            if "refuted" in verification or set(clinical) & {"inactive", "resolved", "remission"}:
                no.append(f"{_ref(res)} ({hit}, not active)")
            else:
                yes.append(f"{_ref(res)} ({hit})")
        else:
            if res.get("status") in ("entered-in-error", "not-done"):
                continue
            when = res.get("performedDateTime") or (res.get("performedPeriod") or {}).get("start")
            if when and as_of - RECENT_PROCEDURE <= parse_time(when, _ref(res)) <= as_of:
                yes.append(f"{_ref(res)} ({hit})")
    if yes:
        return DialysisEvidence(True, ", ".join(yes), "dialysis recorded")
    if no:
        return DialysisEvidence(False, ", ".join(no), "dialysis recorded as not active")
    note = "no Condition or Procedure records dialysis"
    if esrd:
        note += f"; {', '.join(esrd)} records ESRD (N18.6), which alone does not say dialysis"
    return DialysisEvidence(None, "", note)


def extract_history(resources: Sequence[Mapping[str, Any]], *, as_of: datetime) -> PatientHistory:
    """Read doses, levels and covariates up to `as_of`; refuses unusable vancomycin records."""
    medications = {
        key: res
        for res in resources
        if res.get("resourceType") == "Medication"
        for key in (_ref(res), str(res.get("id")))
    }
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), None)
    age: float | None = None
    sex: Sex | None = None
    pid = _ref(patient) if patient else "Patient/?"
    if patient is not None:
        if patient.get("birthDate"):
            born = parse_time(patient["birthDate"], pid)
            age = (as_of - born).days / 365.25
        gender = patient.get("gender")
        sex = "female" if gender == "female" else "male" if gender == "male" else None
    administered: list[DoseEvent] = []
    requested: list[DoseEvent] = []
    levels: list[LevelObservation] = []
    weights: list[Measured] = []
    creatinines: list[Measured] = []
    notes: list[str] = []
    for res in resources:
        kind = res.get("resourceType")
        if kind == "MedicationAdministration":
            dose = _administration(res, medications)
            if dose is not None and dose.start <= as_of:
                administered.append(dose)
        elif kind == "MedicationRequest":
            if res.get("status") in ("active", "completed") and _is_vancomycin(
                _medication_concept(res, medications)
            ):
                requested.extend(_request_doses(res, as_of))
        elif kind == "Observation":
            if res.get("status") in ("entered-in-error", "cancelled"):
                continue
            loinc = [
                str(c.get("code")) for c in _codings(res.get("code")) if c.get("system") == LOINC
            ]
            level_code = next((c for c in loinc if c in LEVEL_KINDS), None)
            when = _observation_time(res)
            if level_code is not None:
                level = _level(res, level_code)
                if level is not None and level.time <= as_of:
                    levels.append(level)
                continue
            q = res.get("valueQuantity")
            if when is None or when > as_of or not isinstance(q, Mapping) or q.get("value") is None:
                continue
            if WEIGHT_LOINC & set(loinc):
                kg = _weight_kg(q)
                if kg is not None:
                    weights.append(Measured(kg, when, _ref(res)))
            elif CREATININE_LOINC & set(loinc):
                mg_dl = _creatinine_mg_dl(q)
                if mg_dl is not None:
                    creatinines.append(Measured(mg_dl, when, _ref(res)))
    doses = administered
    if not administered and requested:
        doses = [d for d in requested if d.start <= as_of]
        notes.append("no MedicationAdministration; doses taken from MedicationRequest timing")
    return PatientHistory(
        patient=pid,
        age=age,
        sex=sex,
        weight=_latest(weights),
        creatinine=_latest(creatinines),
        dialysis=_dialysis(resources, as_of),
        doses=tuple(sorted(doses, key=lambda d: d.start)),
        levels=tuple(sorted(levels, key=lambda lv: lv.time)),
        notes=tuple(notes),
    )


def require_covariates(
    history: PatientHistory, as_of: datetime
) -> tuple[float, Sex, Measured, Measured]:
    """Age, sex, weight and creatinine, or a MissingCovariateError naming what is missing."""
    day = as_of.date().isoformat()
    if history.weight is None:
        raise MissingCovariateError(
            f"{history.patient} has no body weight Observation (LOINC 29463-7 in kg or lb) on "
            f"or before {day}; vancomycin dose not computed"
        )
    if history.creatinine is None:
        raise MissingCovariateError(
            f"{history.patient} has no serum creatinine Observation (LOINC 2160-0 or 38483-4 "
            f"in mg/dL or umol/L) on or before {day}; creatinine clearance not computed"
        )
    if history.age is None:
        raise MissingCovariateError(
            f"{history.patient} has no birthDate; age for Cockcroft-Gault not known"
        )
    if history.sex is None:
        raise MissingCovariateError(
            f"{history.patient} has no gender male or female; Cockcroft-Gault not computed"
        )
    return history.age, history.sex, history.weight, history.creatinine
