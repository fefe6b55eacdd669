"""Vancomycin dose history, levels and covariates of one patient, as of a time.

The FHIR reading is ``twin_engine.fhir.doses`` (one resource at a time, with the shared
dosage reader, medication classes and unit rule); this module assembles what it reads
into the history the PK core fits, and holds the covariate rules:

* Exactly one Patient; resources whose subject/patient names another patient are ignored
  (noted), a resource without a subject is taken as this patient's.
* Administered doses win; planned doses from MedicationRequest timing are used only when no
  administration is recorded (noted).
* The latest weight and creatinine on or before the as-of time; older than the limits
  below is noted, not refused.
* Dialysis: the named rule `twin_engine.dialysis.on_dialysis` (ESRD or dialysis-dependence
  Conditions, dialysis Procedures or Encounters in the last 30 days); nothing recorded
  means not on dialysis, and the statement says so.
* Malformed FHIR in a resource that matters (a vancomycin dose or order, a level, weight,
  creatinine, dialysis evidence) raises `DoseRecordError` (or the level/covariate error)
  naming the resource; an unreadable resource that cannot matter is skipped with a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from twin_engine.dialysis import DialysisRecordError, on_dialysis

# As a module, not by name: twin_engine.fhir.doses imports the PK errors and types, so
# whichever of the two packages is imported first, this import sees a module that may
# still be initialising, and reads its names only when a history is extracted.
from twin_engine.fhir import doses as fhir_doses
from twin_engine.fhir.shape import json_object
from twin_engine.pk.errors import DoseRecordError, DosingError, MissingCovariateError
from twin_engine.pk.types import DoseEvent, LevelObservation, Sex

__all__ = [
    "DialysisEvidence",
    "Measured",
    "PatientHistory",
    "extract_history",
    "require_covariates",
]

# Plausible body weight (project choice: wide bounds that only catch entry/unit errors).
WEIGHT_RANGE_KG: Final = (0.3, 400.0)
# The population models were developed in adults (Goti 2018: 17-101 y; Buelga 2005 >= 15 y;
# Thomson 2009 adults); project choice: 18-120 y, outside that no dose is computed.
AGE_RANGE_Y: Final = (18.0, 120.0)
# Older covariates are flagged on the card, not refused (project choice): creatinine can move
# within days in acute kidney injury, weight within weeks.
STALE_CREATININE: Final = timedelta(hours=72)
STALE_WEIGHT: Final = timedelta(days=30)


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


def _latest(found: list[Measured]) -> Measured | None:
    return max(found, key=lambda m: m.time) if found else None


def _dialysis(resources: Sequence[Mapping[str, Any]], as_of: datetime) -> DialysisEvidence:
    """The named rule `twin_engine.dialysis.on_dialysis` over this patient's records."""
    try:
        status = on_dialysis(resources, as_of=as_of)
    except DialysisRecordError as exc:
        raise DoseRecordError(str(exc)) from exc
    return DialysisEvidence(status.on_dialysis, ", ".join(status.evidence), status.statement)


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
    pid = fhir_doses.resource_ref(patient)
    patient_id = str(patient.get("id"))
    notes: list[str] = []
    try:
        age, sex = fhir_doses.read_age_sex(patient, as_of, notes)
    except fhir_doses.MALFORMED as exc:
        raise MissingCovariateError(f"{pid} could not be read: {exc}") from exc
    medications = {
        key: res
        for res in resources
        if res.get("resourceType") == "Medication"
        for key in (fhir_doses.resource_ref(res), f"urn:uuid:{res.get('id')}")
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
        where = fhir_doses.resource_ref(res)
        try:
            # Relevance first: an unreadable or unrelated resource cannot matter.
            try:
                matters = fhir_doses.relevant(res, medications)
            except DoseRecordError as exc:
                if kind in ("MedicationAdministration", "MedicationRequest"):
                    raise  # might be a vancomycin dose: cannot be skipped
                notes.append(f"{exc}; skipped (not recognisable as relevant to dosing)")
                continue
            if not matters:
                continue
            if not fhir_doses.belongs(res, patient_id, notes):
                others.append(where)
                continue
            mine.append(res)
            if kind == "MedicationAdministration":
                dose = fhir_doses.read_administration(res, medications)
                if dose is not None and dose.start <= as_of:
                    administered.append(dose)
            elif kind == "MedicationRequest":
                requested.extend(fhir_doses.read_request_doses(res, medications, as_of, notes))
            elif kind == "Observation":
                loinc = fhir_doses.observation_loinc(res)
                level_code = next((c for c in loinc if c in fhir_doses.LEVEL_KINDS), None)
                if level_code is not None:
                    level = fhir_doses.read_level(res, level_code)
                    if level is not None and level.time <= as_of:
                        levels.append(level)
                    continue
                what = "body weight" if fhir_doses.WEIGHT_LOINC & set(loinc) else "serum creatinine"
                try:
                    when = fhir_doses.observation_time(res)
                except DoseRecordError as exc:
                    raise MissingCovariateError(f"{exc} ({what})") from exc
                q = res.get("valueQuantity")
                if when is None or when > as_of or q is None:
                    continue
                q = json_object(q, where, "valueQuantity", DoseRecordError)
                if q.get("value") is None:
                    continue
                if fhir_doses.WEIGHT_LOINC & set(loinc):
                    kg = fhir_doses.weight_kg(q, where, notes)
                    if kg is not None:
                        weights.append(Measured(kg, when, where))
                else:
                    mg_dl = fhir_doses.creatinine_mg_dl(q, where, notes)
                    if mg_dl is not None:
                        creatinines.append(Measured(mg_dl, when, where))
        except DosingError:
            raise
        except fhir_doses.MALFORMED as exc:
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
