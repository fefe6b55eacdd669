"""Vancomycin dose history, levels and covariates from FHIR R4 resources (plain dicts).

What is read, and why:
* MedicationAdministration for vancomycin (RxNorm ingredient 11124 on the medication code, a
  referenced/contained Medication, or "vancomycin" in its text): the dosage read by
  `twin_engine.fhir.dosage` (dose in mg or g; the infusion from effectivePeriod start/end, or
  effectiveDateTime with rateRatio / rateQuantity in mass per time). Only intravenous doses
  count (route, else dose form; neither recorded: read as intravenous, said so): oral
  vancomycin is not absorbed, rectal and intrathecal act locally. Statuses entered-in-error
  and not-done are skipped.
* MedicationRequest, only when no administration is recorded: dosageInstruction read by the
  same reader (timing.repeat frequency per period, timeOfDay, timing.code, boundsPeriod,
  count; doseAndRate dose and rate); planned doses from boundsPeriod.start to its end or the
  as-of time. Planned doses are assumed given; the source says so.
* Levels: LOINC 20578-1 (any), 4092-3 (trough), 4090-7 (peak) in mg/L or ug/mL (1 ug/mL =
  1 mg/L, the same mass concentration; docs/clinical.md lists mg/L).
* Weight LOINC 29463-7 (UCUM kg, g, [lb_av]; another unit is named and not used); serum
  creatinine 2160-0 / 38483-4 (mg/dL, or umol/L / 88.4, KDIGO 2012); age and sex from Patient.
* Dialysis: the named rule `twin_engine.dialysis.on_dialysis` (ESRD or dialysis-dependence
  Conditions, dialysis Procedures or Encounters in the last 30 days); nothing recorded means
  not on dialysis, and the statement says so.
* Exactly one Patient; resources whose subject/patient names another patient are ignored
  (noted), a resource without a subject is taken as this patient's.
* Malformed FHIR in a resource that matters (a vancomycin dose or order, a level, weight,
  creatinine, dialysis evidence) raises `DoseRecordError` (or the level/covariate error)
  naming the resource; an unreadable resource that cannot matter is skipped with a note.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from twin_engine.dialysis import DialysisRecordError, dialysis_code, on_dialysis
from twin_engine.fhir.dosage import (
    DosageError,
    planned_times,
    read_administration_dosage,
    read_request_dosage,
)
from twin_engine.fhir.shape import fhir_datetime, finite_number, json_array, json_object
from twin_engine.pk.errors import (
    DoseRecordError,
    DosingError,
    ImplausibleLevelError,
    MissingCovariateError,
)
from twin_engine.pk.types import DoseEvent, LevelKind, LevelObservation, Sex

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
# 1 ug/mL = 1 mg/L (same mass per volume).
LEVEL_UNITS: Final = frozenset({"mg/l", "ug/ml", "µg/ml", "mcg/ml"})
# Implausible above 150 mg/L (project choice: a 3 g dose, the largest single dose this
# service considers, into a central volume of ~20 L gives a peak near 150 mg/L; measured
# peaks in adults are far lower, so a higher value is taken as a unit or entry error).
MAX_LEVEL_MG_L: Final = 150.0
WEIGHT_LOINC: Final = frozenset({"29463-7"})
CREATININE_LOINC: Final = frozenset({"2160-0", "38483-4"})
# mg/dL = umol/L / 88.4 (creatinine 113.12 g/mol; KDIGO 2012, as twin_engine.units).
CREATININE_UMOL_PER_MG_DL: Final = 88.4
LB_KG: Final = 0.45359237  # international avoirdupois pound (UCUM [lb_av])
WEIGHT_UCUM_KG: Final[Mapping[str, float]] = {"kg": 1.0, "g": 0.001, "[lb_av]": LB_KG}
# Plausible body weight (project choice: wide bounds that only catch entry/unit errors).
WEIGHT_RANGE_KG: Final = (0.3, 400.0)
# The population models were developed in adults (Goti 2018: 17-101 y; Buelga 2005 >= 15 y;
# Thomson 2009 adults); project choice: 18-120 y, outside that no dose is computed.
AGE_RANGE_Y: Final = (18.0, 120.0)
# Older covariates are flagged on the card, not refused (project choice): creatinine can move
# within days in acute kidney injury, weight within weeks.
STALE_CREATININE: Final = timedelta(hours=72)
STALE_WEIGHT: Final = timedelta(days=30)
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
_MALFORMED: Final = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError)
_PARTIAL_DATE: Final = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


@dataclass(frozen=True, slots=True)
class Measured:
    """One covariate value with its source and time."""

    value: float
    time: datetime
    source: str


@dataclass(frozen=True, slots=True)
class DialysisEvidence:
    """Dialysis status by the rule `twin_engine.dialysis.on_dialysis`, and why."""

    status: bool
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
    """FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD); a partial date is taken as its first day."""
    if isinstance(text, str):
        partial = _PARTIAL_DATE.match(text)
        if partial:
            year, month = int(partial.group(1)), int(partial.group(2) or 1)
            try:
                born = datetime(year, month, 1, tzinfo=UTC)
            except ValueError as exc:
                raise MissingCovariateError(
                    f"{where} has an unreadable birthDate {text!r}"
                ) from exc
            return born, (
                f"{where} birthDate {text!r} is a partial date; age computed from "
                f"{born.date().isoformat()}"
            )
    try:
        return parse_time(text, where), None
    except DoseRecordError as exc:
        raise MissingCovariateError(f"{where} has an unreadable birthDate {text!r}") from exc


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


def _has_code(
    concept: object, system: str, codes: Iterable[str], where: str = "resource"
) -> str | None:
    wanted = set(codes)
    for c in _codings(concept, where):
        if c.get("system") == system and str(c.get("code")) in wanted:
            return str(c.get("code"))
    return None


def _is_vancomycin(concept: object, where: str = "resource") -> bool:
    if _has_code(concept, RXNORM, {VANCOMYCIN_RXNORM}, where):
        return True
    return any("vancomycin" in t.lower() for t in _texts(concept, where))


def _medication_concept(
    res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> object:
    where = _ref(res)
    if "medicationCodeableConcept" in res:
        return res["medicationCodeableConcept"]
    ref = str(
        _obj(res.get("medicationReference"), where, "medicationReference").get("reference") or ""
    )
    if ref.startswith("#"):
        for contained in _arr(res.get("contained"), where, "contained"):
            if _obj(contained, where, "a contained resource").get("id") == ref[1:]:
                return contained.get("code")
    med = medications.get(ref) or medications.get(ref.split("/")[-1])
    if med is None:
        return None
    # A product whose ingredient is vancomycin counts (e.g. a branded or mixed bag).
    mref = _ref(med)
    for ingredient in _arr(med.get("ingredient"), mref, "ingredient"):
        item = _obj(ingredient, mref, "an ingredient").get("itemCodeableConcept")
        if _is_vancomycin(item, mref):
            return item
    return med.get("code")


def _dosage_error(exc: DosageError) -> DoseRecordError:
    return DoseRecordError(str(exc))


def _administration(
    res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> DoseEvent | None:
    where = _ref(res)
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


def _request_doses(
    res: Mapping[str, Any],
    medications: Mapping[str, Mapping[str, Any]],
    as_of: datetime,
    notes: list[str],
) -> list[DoseEvent]:
    where = _ref(res)
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


def _observation_time(res: Mapping[str, Any]) -> datetime | None:
    where = _ref(res)
    period = _obj(res.get("effectivePeriod"), where, "effectivePeriod")
    when = res.get("effectiveDateTime") or period.get("start")
    return parse_time(when, where) if when else None


def _level(res: Mapping[str, Any], code: str) -> LevelObservation | None:
    where = _ref(res)
    try:
        when = _observation_time(res)
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
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    if unit not in LEVEL_UNITS:
        raise ImplausibleLevelError(
            f"{where} (vancomycin level) is in {unit or 'no unit'!r}, not mg/L or ug/mL"
        )
    value = _number(q["value"], f"{where} (vancomycin level)", "value", ImplausibleLevelError)
    if not 0.0 < value <= MAX_LEVEL_MG_L:
        raise ImplausibleLevelError(
            f"{where} (vancomycin level) of {value:g} mg/L is outside the plausible range "
            f"(0, {MAX_LEVEL_MG_L:g}] mg/L"
        )
    return LevelObservation(time=when, value_mg_l=value, kind=LEVEL_KINDS[code], source=where)


def _weight_kg(q: Mapping[str, Any], where: str, notes: list[str]) -> float | None:
    """Body weight in kg from UCUM kg, g or [lb_av]; another unit is named and not used."""
    unit = str(q.get("code") or q.get("unit") or "").strip()
    value = _number(q["value"], f"{where} (body weight)", "value", MissingCovariateError)
    factor = WEIGHT_UCUM_KG.get(unit)
    if factor is None:
        notes.append(
            f"{where} gives body weight in {unit or 'no unit'!r}, not a UCUM unit of mass "
            "(kg, g, [lb_av]); not used"
        )
        return None
    return value * factor


def _creatinine_mg_dl(q: Mapping[str, Any], where: str) -> float | None:
    unit = str(q.get("code") or q.get("unit") or "").strip().lower()
    value = _number(q["value"], f"{where} (serum creatinine)", "value", MissingCovariateError)
    if unit == "mg/dl":
        return value
    if unit in ("umol/l", "µmol/l", "μmol/l"):
        return value / CREATININE_UMOL_PER_MG_DL
    return None


def _latest(found: list[Measured]) -> Measured | None:
    return max(found, key=lambda m: m.time) if found else None


def _dialysis(resources: Sequence[Mapping[str, Any]], as_of: datetime) -> DialysisEvidence:
    """The named rule `twin_engine.dialysis.on_dialysis` over this patient's records."""
    try:
        status = on_dialysis(resources, as_of=as_of)
    except DialysisRecordError as exc:
        raise DoseRecordError(str(exc)) from exc
    return DialysisEvidence(status.on_dialysis, ", ".join(status.evidence), status.statement)


_PATIENT_REF: Final = re.compile(r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$")


def _belongs(res: Mapping[str, Any], patient_id: str, notes: list[str]) -> bool:
    """False when subject/patient names another patient; a missing subject is this patient's.

    A reference that is not of the form [base/]Patient/<id> (e.g. a bundle's urn:uuid fullUrl)
    cannot be checked; as the record holds exactly one Patient it is taken as that patient's,
    with a note.
    """
    where = _ref(res)
    for key in ("subject", "patient"):
        if res.get(key) is None:
            continue
        ref = _obj(res.get(key), where, key).get("reference")
        if ref is None:
            continue
        if not isinstance(ref, str):
            raise DoseRecordError(f"{where} has a {key}.reference that is not a string")
        found = _PATIENT_REF.search(ref)
        if found:
            return found.group(1) == patient_id
        if ref != f"urn:uuid:{patient_id}":
            notes.append(
                f"{where} names its patient as {ref!r}, which cannot be checked against "
                f"Patient/{patient_id}; taken as this patient's (the record holds one Patient)"
            )
        return True
    return True


def _loinc_codes(res: Mapping[str, Any]) -> list[str]:
    where = _ref(res)
    return [
        str(c.get("code")) for c in _codings(res.get("code"), where) if c.get("system") == LOINC
    ]


def _relevant(res: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the resource can change the dose: vancomycin doses and orders, levels, weight,
    creatinine, dialysis or ESRD records. Raises DoseRecordError when its code is unreadable."""
    kind = res.get("resourceType")
    where = _ref(res)
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
        return bool(set(_loinc_codes(res)) & wanted)
    if kind in ("Condition", "Procedure", "Encounter"):
        return dialysis_code(res) is not None
    return False


def _read_patient(
    patient: Mapping[str, Any], as_of: datetime, notes: list[str]
) -> tuple[float | None, Sex | None]:
    pid = _ref(patient)
    age: float | None = None
    if patient.get("birthDate"):
        born, note = parse_birth_date(patient["birthDate"], pid)
        if note:
            notes.append(note)
        age = (as_of - born).days / 365.25
    gender = patient.get("gender")
    sex: Sex | None = "female" if gender == "female" else "male" if gender == "male" else None
    return age, sex


def _age_note(what: str, m: Measured, as_of: datetime, limit: timedelta) -> str | None:
    age = as_of - m.time
    if age <= limit:
        return None
    return (
        f"{what} {m.source} is from {m.time.isoformat(timespec='minutes')}, "
        f"{age.total_seconds() / 86400.0:.1f} days before the as-of time (older than "
        f"{limit.total_seconds() / 3600.0:g} h); it may no longer reflect the patient"
    )


def extract_history(resources: Sequence[Mapping[str, Any]], *, as_of: datetime) -> PatientHistory:
    """Read doses, levels and covariates up to `as_of`; refuses unusable vancomycin records."""
    for i, res in enumerate(resources):
        if not isinstance(res, Mapping):
            raise DoseRecordError(
                f"resource {i} of the record is a {type(res).__name__}, not a FHIR resource "
                "object; the record cannot be read"
            )
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise DosingError(
            f"the record holds {len(patients)} patients; vancomycin dosing needs exactly one "
            "Patient resource"
        )
    patient = patients[0]
    pid = _ref(patient)
    patient_id = str(patient.get("id"))
    notes: list[str] = []
    try:
        age, sex = _read_patient(patient, as_of, notes)
    except _MALFORMED as exc:
        raise MissingCovariateError(f"{pid} could not be read: {exc}") from exc
    medications = {
        key: res
        for res in resources
        if res.get("resourceType") == "Medication"
        for key in (_ref(res), str(res.get("id")))
    }
    administered: list[DoseEvent] = []
    requested: list[DoseEvent] = []
    levels: list[LevelObservation] = []
    weights: list[Measured] = []
    creatinines: list[Measured] = []
    others: list[str] = []
    mine: list[Mapping[str, Any]] = []
    for res in resources:
        kind = res.get("resourceType")
        if kind not in (
            "MedicationAdministration",
            "MedicationRequest",
            "Observation",
            "Condition",
            "Procedure",
            "Encounter",
        ):
            continue
        where = _ref(res)
        try:
            # Relevance first: an unreadable or unrelated resource cannot matter.
            try:
                relevant = _relevant(res, medications)
            except DoseRecordError as exc:
                if kind in ("MedicationAdministration", "MedicationRequest"):
                    raise  # might be a vancomycin dose: cannot be skipped
                notes.append(f"{exc}; skipped (not recognisable as relevant to dosing)")
                continue
            if not relevant:
                continue
            if not _belongs(res, patient_id, notes):
                others.append(where)
                continue
            mine.append(res)
            if kind == "MedicationAdministration":
                dose = _administration(res, medications)
                if dose is not None and dose.start <= as_of:
                    administered.append(dose)
            elif kind == "MedicationRequest":
                requested.extend(_request_doses(res, medications, as_of, notes))
            elif kind == "Observation":
                loinc = _loinc_codes(res)
                level_code = next((c for c in loinc if c in LEVEL_KINDS), None)
                if level_code is not None:
                    level = _level(res, level_code)
                    if level is not None and level.time <= as_of:
                        levels.append(level)
                    continue
                what = "body weight" if WEIGHT_LOINC & set(loinc) else "serum creatinine"
                try:
                    when = _observation_time(res)
                except DoseRecordError as exc:
                    raise MissingCovariateError(f"{exc} ({what})") from exc
                q = res.get("valueQuantity")
                if when is None or when > as_of or q is None:
                    continue
                q = _obj(q, where, "valueQuantity")
                if q.get("value") is None:
                    continue
                if WEIGHT_LOINC & set(loinc):
                    kg = _weight_kg(q, where, notes)
                    if kg is not None:
                        weights.append(Measured(kg, when, where))
                else:
                    mg_dl = _creatinine_mg_dl(q, where)
                    if mg_dl is not None:
                        creatinines.append(Measured(mg_dl, when, where))
        except DosingError:
            raise
        except _MALFORMED as exc:
            raise DoseRecordError(
                f"{where} could not be read ({type(exc).__name__}: {exc}); it may hold a "
                "vancomycin dose, level or covariate, so no dose is computed"
            ) from exc
    if others:
        notes.append(
            f"ignored {len(others)} resource(s) of another patient than {pid}: "
            + ", ".join(others[:5])
            + (" ..." if len(others) > 5 else "")
        )
    doses = administered
    if not administered and requested:
        doses = [d for d in requested if d.start <= as_of]
        notes.append("no MedicationAdministration; doses taken from MedicationRequest timing")
    weight, creatinine = _latest(weights), _latest(creatinines)
    if creatinine is not None:
        note = _age_note("serum creatinine", creatinine, as_of, STALE_CREATININE)
        if note:
            notes.append(note)
    if weight is not None:
        note = _age_note("body weight", weight, as_of, STALE_WEIGHT)
        if note:
            notes.append(note)
    return PatientHistory(
        patient=pid,
        age=age,
        sex=sex,
        weight=weight,
        creatinine=creatinine,
        dialysis=_dialysis(mine, as_of),
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
    low, high = WEIGHT_RANGE_KG
    if not low <= history.weight.value <= high:
        raise MissingCovariateError(
            f"{history.weight.source} gives body weight {history.weight.value:g} kg, outside "
            f"the plausible {low:g}-{high:g} kg; vancomycin dose not computed"
        )
    if history.creatinine is None:
        raise MissingCovariateError(
            f"{history.patient} has no serum creatinine Observation (LOINC 2160-0 or 38483-4 "
            f"in mg/dL or umol/L) on or before {day}; creatinine clearance not computed"
        )
    if history.creatinine.value <= 0:
        raise MissingCovariateError(
            f"{history.creatinine.source} gives serum creatinine "
            f"{history.creatinine.value:g} mg/dL, which is not positive; CrCl not computed"
        )
    if history.age is None:
        raise MissingCovariateError(
            f"{history.patient} has no birthDate; age for Cockcroft-Gault not known"
        )
    youngest, oldest = AGE_RANGE_Y
    if not youngest <= history.age <= oldest:
        raise MissingCovariateError(
            f"{history.patient} is {history.age:.1f} years old on {day} (from birthDate); the "
            f"vancomycin models are adult models ({youngest:g}-{oldest:g} y)"
        )
    if history.sex is None:
        raise MissingCovariateError(
            f"{history.patient} has no gender male or female; Cockcroft-Gault not computed"
        )
    return history.age, history.sex, history.weight, history.creatinine
