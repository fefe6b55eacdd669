"""Patient, Observation (LOINC codes, UCUM units), Condition and Procedure records.

Each reader checks the elements the twin reads with the reader's own grammar
(``twin_engine.fhir.elements``), asking fhir.resources only about a resource that grammar
cannot vouch for (``twin_engine.fhir.validate``); every resource it cannot use becomes an
``IngestIssue`` naming it and why. Relevance is decided on the raw dict first, cheaply: a
Synthea bundle is mostly resources the twin never reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, TypeVar

from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel

from twin_engine.codes import LOINC_QUANTITY, RELEVANT_OBSERVATION_LOINC, SMOKING_STATUS_LOINC
from twin_engine.concepts import concepts_for
from twin_engine.fhir.elements import (
    observation_parts,
    wellformed_condition,
    wellformed_observation,
    wellformed_patient,
    wellformed_procedure,
)
from twin_engine.fhir.entries import (
    Entry,
    IngestIssue,
    codings,
    dicts,
    first_code,
    loinc_codes,
)
from twin_engine.fhir.shape import as_datetime
from twin_engine.fhir.validate import (
    condition_fields,
    known_fields,
    observation_fields,
    patient_fields,
    procedure_fields,
    unknown_fields,
    validate,
)
from twin_engine.fhir.valuesets import code_problem
from twin_engine.procedures import procedure_concepts_for

_US_CORE_RACE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_US_CORE_ETHNICITY: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"

#: Observation states whose value the twin uses (FHIR R4 ObservationStatus): a final
#: result, a corrected or amended one, and a preliminary one (the value a ward acts on
#: before verification, read as before). registered (no result yet), unknown,
#: cancelled and entered-in-error are skipped with their status named.
USED_OBSERVATION_STATUS: Final = frozenset({"final", "amended", "corrected", "preliminary"})
# Condition verification states that mean "the patient does not have it".
_VOID_VERIFICATION_STATUS: Final = frozenset({"entered-in-error", "refuted"})
# Procedure states that mean it did not happen (FHIR R4 EventStatus).
_VOID_PROCEDURE_STATUS: Final = frozenset({"not-done", "entered-in-error", "preparation"})

# The elements each reader reads (its projection), plus what R4 requires so that a
# well-formed resource validates. `subject` is checked on the raw dict (entries.about) and
# left out of the Observation projection: one more Reference per entry cost ~30% of the
# validation time in a Synthea bundle. Patient: the narrative, names, addresses and
# identifiers are never used (Synthea's narrative alone cost ~1.5 ms a patient to
# validate); race and ethnicity are read from the raw extensions.
PATIENT_FIELDS: Final = frozenset(
    {"resourceType", "id", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime"}
)
OBSERVATION_FIELDS: Final = frozenset(
    {
        "resourceType",
        "id",
        "status",
        "code",
        "effectiveDateTime",
        "effectiveInstant",
        "effectivePeriod",
        "issued",
        "valueQuantity",
        "valueCodeableConcept",
        "component",
        "dataAbsentReason",
    }
)
CONDITION_FIELDS: Final = frozenset(
    {
        "resourceType",
        "id",
        "clinicalStatus",
        "verificationStatus",
        "code",
        "subject",  # required by R4 Condition
        "onsetDateTime",
        "onsetPeriod",
        "abatementDateTime",
        "abatementPeriod",
        "recordedDate",
    }
)
#: Every R4 element of an Observation (the reader's fast path: ``read_observation``).
_OBSERVATION_ELEMENTS: Final = known_fields("Observation")
PROCEDURE_FIELDS: Final = frozenset(
    {"resourceType", "id", "status", "code", "subject", "performedDateTime", "performedPeriod"}
)


@dataclass(frozen=True, slots=True)
class CodingRecord:
    system: str | None
    code: str
    display: str | None


@dataclass(frozen=True, slots=True)
class PatientRecord:
    id: str
    birth_date: date | None
    gender: str | None
    race_omb: tuple[str, ...]
    race_recorded: bool
    ethnicity_omb: tuple[str, ...]
    deceased: bool
    deceased_time: datetime | None

    @property
    def source(self) -> str:
        return f"Patient/{self.id}"


@dataclass(frozen=True, slots=True)
class QuantityRecord:
    """One numeric value of an Observation (its own value or a component's)."""

    loinc: str
    value: float
    ucum_code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class ObservationRecord:
    source: str
    time: datetime
    quantities: tuple[QuantityRecord, ...]
    smoking_codings: tuple[CodingRecord, ...]


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    source: str
    codings: tuple[CodingRecord, ...]
    clinical_status: str | None
    onset: datetime | None
    abatement: datetime | None
    recorded: datetime | None
    #: FHIR condition-ver-status (confirmed, provisional, differential, unconfirmed) or None.
    verification_status: str | None = None


@dataclass(frozen=True, slots=True)
class ProcedureRecord:
    """A performed procedure the twin reads (revascularisation, dialysis)."""

    source: str
    codings: tuple[CodingRecord, ...]
    status: str
    performed: datetime | None


_F = TypeVar("_F")


def checked_fields(
    entry: Entry,
    keep: frozenset[str],
    fast: Callable[[dict[str, Any]], _F | None],
    slow: Callable[[FHIRResourceModel], _F | None],
    issues: list[IngestIssue],
) -> _F | None:
    """The fields of an entry: the reader's own check of its projection on ``keep``, or
    fhir.resources' when that check cannot vouch for it; None (with the reason) when the
    resource has elements R4 does not define, a status outside its value set, or an
    invalid element the twin reads.

    Coded elements with a required R4 binding are checked first, on both paths:
    fhir.resources accepts any code there."""
    problem = code_problem(entry.resource_type, entry.resource)
    if problem is not None:
        issues.append(entry.issue(f"{entry.source} {problem}; skipped"))
        return None
    if unknown_fields(entry, issues):
        return None
    found = fast({k: v for k, v in entry.resource.items() if k in keep})
    if found is not None:
        return found
    model = validate(entry, keep, issues)
    return slow(model) if model is not None else None


def _codings_of(concept: object) -> tuple[CodingRecord, ...]:
    return tuple(
        CodingRecord(c.get("system"), c["code"], c.get("display")) for c in codings(concept)
    )


# -- relevance (raw dict) ------------------------------------------------------------------

_QUANTITY_LOINC: Final = frozenset(LOINC_QUANTITY)


def observation_codes(raw: Mapping[str, Any]) -> list[str] | None:
    """The LOINC codes of an Observation the twin reads (of its own code: a component's
    quantity alone may make it relevant), or None when the twin reads nothing of it. The
    one relevance test; ``read_observation`` is given the codes, not reading them again."""
    codes = loinc_codes(raw.get("code"))
    if not RELEVANT_OBSERVATION_LOINC.isdisjoint(codes):
        return codes
    components = raw.get("component")
    if not components or not isinstance(components, list):
        return None
    relevant = any(
        not _QUANTITY_LOINC.isdisjoint(loinc_codes(comp.get("code")))
        for comp in components
        if isinstance(comp, dict)
    )
    return codes if relevant else None


def condition_relevant(raw: Mapping[str, Any]) -> bool:
    return any(concepts_for(c.get("system"), c["code"]) for c in codings(raw.get("code")))


def procedure_relevant(raw: Mapping[str, Any]) -> bool:
    return any(procedure_concepts_for(c.get("system"), c["code"]) for c in codings(raw.get("code")))


# -- times ---------------------------------------------------------------------------------


def _as_date(value: object) -> date | None:
    moment = as_datetime(value)
    return moment.date() if moment is not None else None


# -- per resource type -----------------------------------------------------------------------


def read_patient(entry: Entry, issues: list[IngestIssue]) -> PatientRecord | None:
    fields = checked_fields(entry, PATIENT_FIELDS, wellformed_patient, patient_fields, issues)
    if fields is None:
        return None
    if entry.resource_id is None:
        issues.append(entry.issue("a Patient has no id and no fullUrl; skipped"))
        return None
    race: list[str] = []
    ethnicity: list[str] = []
    race_recorded = False
    for ext in dicts(entry.resource.get("extension")):
        url = ext.get("url")
        if url not in (_US_CORE_RACE, _US_CORE_ETHNICITY):
            continue
        race_recorded = race_recorded or url == _US_CORE_RACE
        target = race if url == _US_CORE_RACE else ethnicity
        for sub in dicts(ext.get("extension")):
            coding = sub.get("valueCoding")
            if sub.get("url") == "ombCategory" and isinstance(coding, dict) and coding.get("code"):
                target.append(str(coding["code"]))
    deceased_time = as_datetime(fields.deceased_date_time)
    return PatientRecord(
        id=entry.resource_id,
        birth_date=_as_date(fields.birth_date),
        gender=fields.gender,
        race_omb=tuple(race),
        race_recorded=race_recorded,
        ethnicity_omb=tuple(ethnicity),
        deceased=bool(fields.deceased_boolean) or deceased_time is not None,
        deceased_time=deceased_time,
    )


def read_observation(
    entry: Entry, issues: list[IngestIssue], codes: list[str]
) -> ObservationRecord | None:
    """The Observation's values the twin reads; ``codes`` are its ``observation_codes``."""
    raw = entry.resource
    # ``checked_fields`` inlined for the common case (the reader's cold path runs it per
    # Observation). When the resource has only R4 elements, ``unknown_fields`` finds
    # nothing; ``observation_parts`` vouches only for a status in the R4 value set (the one
    # required binding of an Observation the twin reads, ``valuesets.REQUIRED_CODES``), so
    # ``code_problem`` would find nothing either; and it reads only elements of
    # OBSERVATION_FIELDS, so on the resource it answers as on the projection
    # ``checked_fields`` would copy. Anything else takes ``checked_fields`` itself, with
    # its refusals and reasons (tests/twin_engine/test_reader_fast_path.py holds each
    # premise, and that both ways give the same record and issues).
    parts = observation_parts(raw) if raw.keys() <= _OBSERVATION_ELEMENTS else None
    if parts is None:
        fields = checked_fields(
            entry, OBSERVATION_FIELDS, wellformed_observation, observation_fields, issues
        )
        if fields is None:
            return None
        parts = (
            fields.status,
            fields.effective_date_time,
            fields.effective_instant,
            fields.effective_period_start,
            fields.issued,
        )
    status, effective_date_time, effective_instant, effective_period_start, issued = parts
    src = entry.source
    if status not in USED_OBSERVATION_STATUS:
        issues.append(entry.issue(f"{src} has status {status}; skipped"))
        return None
    time = as_datetime(effective_date_time or effective_instant or effective_period_start or issued)
    if time is None:
        issues.append(entry.issue(f"{src} has no effective time; skipped"))
        return None

    quantities: list[QuantityRecord] = []
    own = _first_quantity_code(codes)
    if own is not None:
        quantity = _quantity(own, raw.get("valueQuantity"))
        if quantity is None:
            issues.append(entry.issue(_no_value(src, raw.get("valueQuantity"))))
            return None
        quantities.append(quantity)
    components = raw.get("component")
    for comp in dicts(components) if components else ():
        comp_code = _first_quantity_code(loinc_codes(comp.get("code")))
        if comp_code is None:
            continue
        quantity = _quantity(comp_code, comp.get("valueQuantity"))
        if quantity is None:
            reason = _no_value(f"{src} component {comp_code}", comp.get("valueQuantity"))
            issues.append(entry.issue(reason.replace("; skipped", "; component skipped")))
            continue
        quantities.append(quantity)

    smoking: tuple[CodingRecord, ...] = ()
    if SMOKING_STATUS_LOINC in codes:
        smoking = _codings_of(raw.get("valueCodeableConcept"))
        if not smoking:
            issues.append(entry.issue(f"{src} has no coded smoking status value; skipped"))
            return None
    if not quantities and not smoking:
        return None
    return ObservationRecord(src, time, tuple(quantities), smoking)


_NUMBER: Final = (int, float)  # a JSON number (bool aside); a tuple, not built per call


def _first_quantity_code(codes: list[str]) -> str | None:
    """The first of ``codes`` that names a quantity the twin reads, or None."""
    for code in codes:
        if code in LOINC_QUANTITY:
            return code
    return None


def _quantity(loinc: str, raw_quantity: object) -> QuantityRecord | None:
    if not isinstance(raw_quantity, dict):
        return None
    value = raw_quantity.get("value")
    # FHIR JSON carries decimals as JSON numbers; a string "7.2" is invalid FHIR JSON
    # even though the R4B model would coerce it, so it is refused here.
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return None
    return QuantityRecord(loinc, float(value), raw_quantity.get("code"), raw_quantity.get("unit"))


def _no_value(what: str, raw_quantity: object) -> str:
    if not isinstance(raw_quantity, dict):
        return f"{what} has no valueQuantity; skipped"
    if "value" not in raw_quantity:
        return f"{what} has a valueQuantity without a value; skipped"
    return f"{what} has a valueQuantity.value that is not a JSON number; skipped"


def read_condition(entry: Entry, issues: list[IngestIssue]) -> ConditionRecord | None:
    fields = checked_fields(entry, CONDITION_FIELDS, wellformed_condition, condition_fields, issues)
    if fields is None:
        return None
    verification = first_code(entry.resource.get("verificationStatus"))
    if verification in _VOID_VERIFICATION_STATUS:
        issues.append(entry.issue(f"{entry.source} is {verification}; skipped"))
        return None
    return ConditionRecord(
        source=entry.source,
        codings=_codings_of(entry.resource.get("code")),
        clinical_status=first_code(entry.resource.get("clinicalStatus")),
        onset=as_datetime(fields.onset),
        abatement=as_datetime(fields.abatement),
        recorded=as_datetime(fields.recorded),
        verification_status=verification,
    )


def read_procedure(entry: Entry, issues: list[IngestIssue]) -> ProcedureRecord | None:
    fields = checked_fields(entry, PROCEDURE_FIELDS, wellformed_procedure, procedure_fields, issues)
    if fields is None:
        return None
    if fields.status in _VOID_PROCEDURE_STATUS:
        issues.append(entry.issue(f"{entry.source} is {fields.status}; skipped"))
        return None
    return ProcedureRecord(
        source=entry.source,
        codings=_codings_of(entry.resource.get("code")),
        status=fields.status,
        performed=as_datetime(fields.performed),
    )
