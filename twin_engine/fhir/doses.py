"""Vancomycin doses, orders, levels and covariates from FHIR R4 resources (plain dicts).

The FHIR half of the dose history (``twin_engine.pk.history`` assembles it): each reader
takes one resource and returns the PK core's own types (``DoseEvent``, ``LevelObservation``)
or a value in the PK unit, and refuses malformed FHIR in a resource that matters with a
``DosingError`` naming it. What it shares with every other reader is shared, not copied:
the dosage reader (``twin_engine.fhir.dosage``), the JSON shapes (``shape``), the medication
resolver (``medications``), the medication classes (``twin_engine.medications``) and the
unit rule (``twin_engine.units``).

* MedicationAdministration for vancomycin: the dosage (dose in mg or g; the infusion from
  effectivePeriod start/end, or effectiveDateTime with a rate). Only intravenous doses
  count (route, else dose form; neither recorded: read as intravenous, said so): oral
  vancomycin is not absorbed, rectal and intrathecal act locally. Statuses entered-in-error
  and not-done are skipped.
* MedicationRequest, used only when no administration is recorded: planned doses from
  boundsPeriod.start to its end or the as-of time, assumed given (the source says so).
* Levels: LOINC 20578-1 (any), 4092-3 (trough), 4090-7 (peak) in mg/L or ug/mL.
* Weight LOINC 29463-7; serum creatinine 2160-0 / 38483-4; age and sex from Patient.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from twin_engine.codes import QuantityName
from twin_engine.dialysis import dialysis_code
from twin_engine.fhir.dosage import (
    DosageError,
    planned_times,
    read_administration_dosage,
    read_request_dosage,
)
from twin_engine.fhir.entries import PatientRef
from twin_engine.fhir.medications import resolve_medication
from twin_engine.fhir.shape import (
    date_time,
    fhir_datetime,
    finite_number,
    json_array,
    json_object,
)
from twin_engine.medications import classify_medication
from twin_engine.pk.errors import (
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    MissingCovariateError,
)
from twin_engine.pk.types import DoseEvent, LevelKind, LevelObservation, Sex
from twin_engine.units import normalise

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

VANCOMYCIN_RXNORM: Final = "11124"  # docs/clinical.md: vancomycin ingredient
# Routes that give systemic exposure: intravenous, and no route or dose form recorded (read
# as intravenous, the only systemic form of vancomycin, and said so). Oral vancomycin is not
# absorbed (C. difficile only); rectal and intrathecal act locally (docs/clinical.md).
SYSTEMIC_ROUTES: Final = frozenset({"intravenous", "unknown"})
LEVEL_KINDS: Final[Mapping[str, LevelKind]] = {
    "4092-3": "trough",
    "4090-7": "peak",
    "20578-1": "random",
}
# Implausible above 150 mg/L (project choice: a 3 g dose, the largest single dose this
# service considers, into a central volume of ~20 L gives a peak near 150 mg/L; measured
# peaks in adults are far lower, so a higher value is taken as a unit or entry error).
MAX_LEVEL_MG_L: Final = 150.0
WEIGHT_LOINC: Final = frozenset({"29463-7"})
CREATININE_LOINC: Final = frozenset({"2160-0", "38483-4"})
# Planned doses from a MedicationRequest are expanded only over the last 14 days before the
# as-of time, and the period must be at least 1 h (a shorter one is an entry error and could
# expand into millions of doses). Dropping older planned doses is safe in most patients:
# vancomycin's half-life is ~4-12 h with normal renal function and a few days in severe
# renal impairment, so a dose given more than 14 days ago leaves essentially nothing in the
# plasma. It is NOT safe in anuric patients (half-life up to ~7-9 days without dialysis),
# where older doses can still contribute; the dropped doses are noted on the result.
REQUEST_WINDOW: Final = timedelta(days=14)
MIN_REQUEST_PERIOD_H: Final = 1.0
# Errors Python raises on malformed JSON shapes; caught per resource and turned into a
# DosingError that names the resource.
MALFORMED: Final = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)


def resource_ref(res: Mapping[str, Any]) -> str:
    return f"{res.get('resourceType', 'Resource')}/{res.get('id', '?')}"


def _obj(value: object, where: str, what: str) -> Mapping[str, Any]:
    return json_object(value, where, what, DoseRecordError)


def _arr(value: object, where: str, what: str) -> list[Any]:
    return json_array(value, where, what, DoseRecordError)


def _number(
    value: object, where: str, what: str, error: type[DosingError] = DoseRecordError
) -> float:
    return finite_number(value, where, what, error)


def parse_time(text: object, where: str) -> datetime:
    """FHIR dateTime to an aware datetime (dates and naive times taken as UTC)."""
    return fhir_datetime(text, where, "time", DoseRecordError)


def parse_birth_date(text: object, where: str) -> tuple[datetime, str | None]:
    """FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD) by the reader's one dateTime rule; a
    partial date is taken as its first day, with a note."""
    try:
        born = parse_time(text, where)
    except DoseRecordError as exc:
        raise MissingCovariateError(f"{where} has an unreadable birthDate {text!r}") from exc
    if isinstance(date_time(text), str):
        return born, (
            f"{where} birthDate {text!r} is a partial date; age computed from "
            f"{born.date().isoformat()}"
        )
    return born, None


def _codings(concept: object, where: str = "resource") -> list[Mapping[str, Any]]:
    if concept is None:
        return []
    concept = _obj(concept, where, "a CodeableConcept")
    codings = _arr(concept.get("coding"), where, "coding")
    for c in codings:
        if not isinstance(c, Mapping):
            raise DoseRecordError(f"{where} has a coding entry that is not an object")
    return codings


def _texts(concept: object, where: str = "resource") -> list[str]:
    if concept is None:
        return []
    texts = [str(c.get("display", "")) for c in _codings(concept, where)]
    return [*texts, str(_obj(concept, where, "a CodeableConcept").get("text", ""))]


def _is_vancomycin(concept: object, where: str = "resource") -> bool:
    """Vancomycin by the twin's medication classes (RxNorm ingredient 11124, or the name in
    a display or text: ``twin_engine.medications``), read strictly: a malformed coding
    raises, since it may hide a vancomycin dose."""
    rxnorm = tuple(
        str(c.get("code")) for c in _codings(concept, where) if c.get("system") == RXNORM
    )
    texts = tuple(t for t in _texts(concept, where) if t)
    return any(m.medication_class == "vancomycin" for m in classify_medication(rxnorm, texts))


def _medication_concept(
    res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> object:
    where = resource_ref(res)
    if "medicationCodeableConcept" in res:
        return res["medicationCodeableConcept"]
    ref = str(
        _obj(res.get("medicationReference"), where, "medicationReference").get("reference") or ""
    )
    if ref.startswith("#"):
        for contained in _arr(res.get("contained"), where, "contained"):
            _obj(contained, where, "a contained resource")
    med = resolve_medication(res, ref, medications)
    if med is None:
        return None
    # A product whose ingredient is vancomycin counts (e.g. a branded or mixed bag).
    mref = resource_ref(med)
    for ingredient in _arr(med.get("ingredient"), mref, "ingredient"):
        item = _obj(ingredient, mref, "an ingredient").get("itemCodeableConcept")
        if _is_vancomycin(item, mref):
            return item
    return med.get("code")


def _dosage_error(exc: DosageError) -> DoseRecordError:
    return DoseRecordError(str(exc))


def read_administration(
    res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> DoseEvent | None:
    where = resource_ref(res)
    if res.get("status") in ("entered-in-error", "not-done"):
        return None
    concept = _medication_concept(res, medications)
    if not _is_vancomycin(concept, where):
        return None
    try:
        dosage = read_administration_dosage(res.get("dosage"), where, medication=concept)
    except DosageError as exc:
        raise _dosage_error(exc) from exc
    if dosage.route not in SYSTEMIC_ROUTES or dosage.dose_mg is None:
        return None  # oral, rectal, intrathecal vancomycin: no systemic exposure
    amount = dosage.dose_mg
    period = _obj(res.get("effectivePeriod"), where, "effectivePeriod")
    if period.get("start") and period.get("end"):
        start = parse_time(period["start"], where)
        hours = (parse_time(period["end"], where) - start).total_seconds() / 3600.0
    else:
        when = res.get("effectiveDateTime") or period.get("start")
        start = parse_time(when, where)
        if dosage.rate_mg_h is None:
            raise DoseRecordError(
                f"{where} has a start time but neither an end time nor an infusion rate; "
                "the infusion duration is unknown"
            )
        hours = amount / dosage.rate_mg_h
    if not hours > 0:
        raise DoseRecordError(f"{where} has an infusion duration of {hours:g} h")
    return DoseEvent(start=start, duration_h=hours, amount_mg=amount, source=where)


def read_request_doses(
    res: Mapping[str, Any],
    medications: Mapping[str, Mapping[str, Any]],
    as_of: datetime,
    notes: list[str],
) -> list[DoseEvent]:
    where = resource_ref(res)
    concept = _medication_concept(res, medications)
    out: list[DoseEvent] = []
    for raw in _arr(res.get("dosageInstruction"), where, "dosageInstruction"):
        try:
            dosage = read_request_dosage(raw, where, medication=concept)
        except DosageError as exc:
            raise _dosage_error(exc) from exc
        if dosage.route not in SYSTEMIC_ROUTES or dosage.dose_mg is None:
            continue
        timing = dosage.timing
        if timing.bounds_start is None or timing.interval_h is None:
            raise DoseRecordError(
                f"{where} has no timing.repeat.boundsPeriod.start or dosing interval; "
                "planned dose times unknown"
            )
        interval_h = timing.interval_h
        if not interval_h >= MIN_REQUEST_PERIOD_H:
            raise DoseRecordError(
                f"{where} repeats every {interval_h:g} h; a vancomycin dosing period under "
                f"{MIN_REQUEST_PERIOD_H:g} h is not plausible"
            )
        amount = dosage.dose_mg
        hours = dosage.infusion_h
        if hours is None:
            raise DoseRecordError(
                f"{where} has neither timing.repeat.duration nor a rate; "
                "the infusion duration is unknown"
            )
        end = min(as_of, timing.bounds_end) if timing.bounds_end else as_of
        # Only the last REQUEST_WINDOW (see its comment).
        try:
            times, skipped = planned_times(
                timing, start=timing.bounds_start, end=end, since=as_of - REQUEST_WINDOW
            )
        except DosageError as exc:
            raise _dosage_error(exc) from exc
        if skipped > 0:
            notes.append(
                f"{where}: {skipped} planned dose(s) more than "
                f"{REQUEST_WINDOW.days} days before the as-of time not counted (negligible "
                "now unless the patient is anuric)"
            )
        notes.extend(dosage.notes)
        out.extend(
            DoseEvent(
                start=when,
                duration_h=hours,
                amount_mg=amount,
                source=f"{where} (planned dose {skipped + k + 1}, assumed given)",
            )
            for k, when in enumerate(times)
        )
    return out


def observation_time(res: Mapping[str, Any]) -> datetime | None:
    where = resource_ref(res)
    period = _obj(res.get("effectivePeriod"), where, "effectivePeriod")
    when = res.get("effectiveDateTime") or period.get("start")
    return parse_time(when, where) if when else None


def read_level(res: Mapping[str, Any], code: str) -> LevelObservation | None:
    where = resource_ref(res)
    try:
        when = observation_time(res)
    except DoseRecordError as exc:
        raise ImplausibleLevelError(f"{exc} (vancomycin level)") from exc
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
    value = _number(q["value"], f"{where} (vancomycin level)", "value", ImplausibleLevelError)
    level = normalise("vancomycin", value, _unit_field(q, "code"), _unit_field(q, "unit"))
    if not level.known:
        raise ImplausibleLevelError(
            f"{where} (vancomycin level): {level.reason}; not mg/L or ug/mL"
        )
    value = level.value
    if not 0.0 < value <= MAX_LEVEL_MG_L:
        raise ImplausibleLevelError(
            f"{where} (vancomycin level) of {value:g} mg/L is outside the plausible range "
            f"(0, {MAX_LEVEL_MG_L:g}] mg/L"
        )
    return LevelObservation(time=when, value_mg_l=value, kind=LEVEL_KINDS[code], source=where)


def _unit_field(q: Mapping[str, Any], key: str) -> str | None:
    value = q.get(key)
    return value if isinstance(value, str) else None


def weight_kg(q: Mapping[str, Any], where: str, notes: list[str]) -> float | None:
    """Body weight in kg by the one unit rule (``twin_engine.units``); another unit is
    named in the notes and not used."""
    return _covariate(q, where, notes, "weight", "body weight")


def creatinine_mg_dl(q: Mapping[str, Any], where: str, notes: list[str]) -> float | None:
    """Serum creatinine in mg/dL by the one unit rule (umol/L / 88.4, KDIGO 2012); another
    unit is named in the notes and not used."""
    return _covariate(q, where, notes, "creatinine", "serum creatinine")


def _covariate(
    q: Mapping[str, Any], where: str, notes: list[str], quantity: QuantityName, what: str
) -> float | None:
    value = _number(q["value"], f"{where} ({what})", "value", MissingCovariateError)
    converted = normalise(quantity, value, _unit_field(q, "code"), _unit_field(q, "unit"))
    if not converted.known:
        notes.append(f"{where} gives {what}: {converted.reason}; not used")
        return None
    return converted.value


def belongs(res: Mapping[str, Any], patient_id: str, notes: list[str]) -> bool:
    """False when subject/patient names another resource than the patient, by the reader's
    one rule (``entries.PatientRef``); a missing subject is this patient's. The dose history
    holds bare resources, so a urn:uuid other than ``urn:uuid:<id>`` cannot be checked: as
    the record holds exactly one Patient it is taken as that patient's, with a note."""
    where = resource_ref(res)
    patient = PatientRef(patient_id, entries_known=False)
    for key in ("subject", "patient"):
        if res.get(key) is None:
            continue
        ref = _obj(res.get(key), where, key).get("reference")
        if ref is None:
            continue
        if not isinstance(ref, str):
            raise DoseRecordError(f"{where} has a {key}.reference that is not a string")
        named = patient.named_by(ref)
        if named is None:
            notes.append(patient.unchecked(where, ref))
        return named is not False
    return True


def observation_loinc(res: Mapping[str, Any]) -> list[str]:
    where = resource_ref(res)
    return [
        str(c.get("code")) for c in _codings(res.get("code"), where) if c.get("system") == LOINC
    ]


def relevant(res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the resource can change the dose: vancomycin doses and orders, levels, weight,
    creatinine, dialysis or ESRD records. Raises DoseRecordError when its code is unreadable."""
    kind = res.get("resourceType")
    where = resource_ref(res)
    if kind == "MedicationAdministration":
        return res.get("status") not in ("entered-in-error", "not-done") and _is_vancomycin(
            _medication_concept(res, medications), where
        )
    if kind == "MedicationRequest":
        return res.get("status") in ("active", "completed") and _is_vancomycin(
            _medication_concept(res, medications), where
        )
    if kind == "Observation":
        if res.get("status") in ("entered-in-error", "cancelled"):
            return False
        wanted = set(LEVEL_KINDS) | WEIGHT_LOINC | CREATININE_LOINC
        return bool(set(observation_loinc(res)) & wanted)
    if kind in ("Condition", "Procedure", "Encounter"):
        return dialysis_code(res) is not None
    return False


def read_age_sex(
    patient: Mapping[str, Any], as_of: datetime, notes: list[str]
) -> tuple[float | None, Sex | None]:
    pid = resource_ref(patient)
    age: float | None = None
    if patient.get("birthDate"):
        born, note = parse_birth_date(patient["birthDate"], pid)
        if note:
            notes.append(note)
        age = (as_of - born).days / 365.25
    gender = patient.get("gender")
    sex: Sex | None = "female" if gender == "female" else "male" if gender == "male" else None
    return age, sex
