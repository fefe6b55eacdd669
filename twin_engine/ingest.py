"""FHIR R4 in, the twin's own record types out.

The FHIR boundary.  A payload (Bundle of any type, single resource, or list of
resources) is split into entries; relevance is decided on the raw dict, cheaply, and
only relevant entries are validated with `fhir.resources.R4B`.  Validation costs ~25x
a `json.loads` per resource, and a Synthea bundle is mostly Claims, EOBs and
Observations the twin never reads, so validating everything would dominate a hook call.

Validation is of the fields the twin reads (a projection of the entry); the remaining
top-level field names are still checked against the R4B model so an R5-only or
misspelled field is caught.  A bad entry becomes an `IngestIssue` and is skipped; only
an unusable payload as a whole raises `IngestError`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Final, Literal, TypeVar

import orjson
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from pydantic import ValidationError

from twin_engine.codes import (
    LOINC_QUANTITY,
    LOINC_SYSTEM,
    RELEVANT_OBSERVATION_LOINC,
    RXNORM_SYSTEM,
    SMOKING_STATUS_LOINC,
)
from twin_engine.concepts import concepts_for
from twin_engine.errors import IngestError
from twin_engine.medications import classify_medication
from twin_engine.procedures import procedure_concepts_for
from twin_engine.wellformed import ObservationFields, wellformed_observation

MedicationKind = Literal["MedicationRequest", "MedicationStatement", "MedicationAdministration"]

_US_CORE_RACE: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_US_CORE_ETHNICITY: Final = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"

# Observation states whose value must not be used (FHIR R4 ObservationStatus).
_VOID_OBSERVATION_STATUS: Final = frozenset({"entered-in-error", "cancelled"})
# Condition verification states that mean "the patient does not have it".
_VOID_VERIFICATION_STATUS: Final = frozenset({"entered-in-error", "refuted"})

# The fields each validated projection keeps: what the twin reads, plus what R4B
# requires so that a well-formed resource validates.  `subject` is checked on the raw
# dict (_about) and left out of the Observation projection: validating one more
# Reference per entry costs ~30% of the validation time in a Synthea bundle.
#: Patient fields the twin reads, validated with R4B; the narrative (``text``), names,
#: addresses and identifiers are never used, and validating Synthea's large narrative
#: alone cost ~1.5 ms a patient. Race and ethnicity are read from the raw extensions.
_PATIENT_FIELDS: Final = frozenset(
    {"resourceType", "id", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime"}
)

_OBSERVATION_FIELDS: Final = frozenset(
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
_CONDITION_FIELDS: Final = frozenset(
    {
        "resourceType",
        "id",
        "clinicalStatus",
        "verificationStatus",
        "code",
        "subject",  # required by R4B Condition
        "onsetDateTime",
        "onsetPeriod",
        "abatementDateTime",
        "abatementPeriod",
        "recordedDate",
    }
)
_MEDICATION_USE_FIELDS: Final = frozenset(
    {
        "resourceType",
        "id",
        "status",
        "intent",
        "subject",
        "medicationCodeableConcept",
        "medicationReference",
        "contained",
        "authoredOn",
        "effectiveDateTime",
        "effectivePeriod",
        "dateAsserted",
    }
)
_MEDICATION_FIELDS: Final = frozenset({"resourceType", "id", "code"})
_PROCEDURE_FIELDS: Final = frozenset(
    {"resourceType", "id", "status", "code", "subject", "performedDateTime", "performedPeriod"}
)
# Procedure states that mean it did not happen (FHIR R4 EventStatus).
_VOID_PROCEDURE_STATUS: Final = frozenset({"not-done", "entered-in-error", "preparation"})
_MEDICATION_MODELS: Final[Mapping[str, type[FHIRResourceModel]]] = {
    "MedicationRequest": MedicationRequest,
    "MedicationStatement": MedicationStatement,
    "MedicationAdministration": MedicationAdministration,
}


@dataclass(frozen=True, slots=True)
class IngestIssue:
    """An entry that was skipped (or partly skipped), and why."""

    resource_type: str
    resource_id: str | None
    reason: str


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


@dataclass(frozen=True, slots=True)
class MedicationRecord:
    source: str
    kind: MedicationKind
    status: str
    rxnorm_codes: tuple[str, ...]
    texts: tuple[str, ...]
    authored: datetime | None
    effective_start: datetime | None
    effective_end: datetime | None


DomainResource = (
    PatientRecord | ObservationRecord | ConditionRecord | MedicationRecord | ProcedureRecord
)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The relevant resources of one patient, parsed, and the issues met on the way."""

    patient: PatientRecord
    resources: tuple[DomainResource, ...]
    issues: tuple[IngestIssue, ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    resource: dict[str, Any]
    resource_type: str
    resource_id: str | None
    full_url: str | None

    @property
    def source(self) -> str:
        return f"{self.resource_type}/{self.resource_id or '?'}"


def ingest(payload: object, *, patient_id: str | None = None) -> IngestResult:
    """Parse a FHIR R4 payload into the twin's record types.

    `payload` is a parsed JSON dict (a Bundle of any type or one resource) or a list
    of resource dicts.  Raises IngestError when the payload is not FHIR, holds no
    Patient, holds several Patients and `patient_id` does not pick one, or
    `patient_id` names a Patient that is not there.
    """
    issues: list[IngestIssue] = []
    entries = _entries(payload, issues)

    patients: list[tuple[_Entry, PatientRecord]] = []
    medications: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.resource_type == "Patient":
            found = _memo(_patient, entry, issues)
            if found is not None:
                patients.append((entry, found))
        elif entry.resource_type == "Medication":
            for key in _reference_keys(entry):
                medications[key] = entry.resource
    patient_entry, patient = _select_patient(patients, patient_id)
    patient_refs = _reference_keys(patient_entry) | {f"Patient/{patient.id}"}

    resources: list[DomainResource] = [patient]
    for entry in entries:
        record: DomainResource | None = None
        if entry.resource_type == "Observation":
            if _observation_relevant(entry.resource) and _about(entry, patient_refs, issues):
                record = _memo(_observation, entry, issues)
        elif entry.resource_type == "Condition":
            if _condition_relevant(entry.resource) and _about(entry, patient_refs, issues):
                record = _memo(_condition, entry, issues)
        elif entry.resource_type in _MEDICATION_MODELS:
            record = _medication_use(entry, medications, patient_refs, issues)
        elif (
            entry.resource_type == "Procedure"
            and _procedure_relevant(entry.resource)
            and _about(entry, patient_refs, issues)
        ):
            record = _memo(_procedure, entry, issues)
        if record is not None:
            resources.append(record)
    return IngestResult(patient=patient, resources=tuple(resources), issues=tuple(issues))


# -- entries ---------------------------------------------------------------------------


def _entries(payload: object, issues: list[IngestIssue]) -> list[_Entry]:
    if isinstance(payload, dict):
        resource_type = payload.get("resourceType")
        if not isinstance(resource_type, str):
            raise IngestError("payload is not FHIR: it has no resourceType")
        if resource_type == "Bundle":
            raw_entries = payload.get("entry") or []
            if not isinstance(raw_entries, list):
                raise IngestError("Bundle.entry is not a list")
            items: Iterable[tuple[object, object]] = (
                (e.get("resource"), e.get("fullUrl")) if isinstance(e, dict) else (e, None)
                for e in raw_entries
            )
        else:
            items = [(payload, None)]
    elif isinstance(payload, list):
        items = ((r, None) for r in payload)
    else:
        raise IngestError(
            "payload must be a JSON object or array of FHIR resources, "
            f"not {type(payload).__name__}"
        )

    entries: list[_Entry] = []
    for index, (resource, full_url) in enumerate(items):
        url = full_url if isinstance(full_url, str) else None
        if resource is None:
            # Entries of a transaction-response or a search outcome may carry no resource.
            continue
        if not isinstance(resource, dict):
            reason = f"entry {index} is not a JSON object; skipped"
            issues.append(IngestIssue("unknown", None, reason))
            continue
        rtype = resource.get("resourceType")
        raw_id = resource.get("id")
        rid = raw_id if isinstance(raw_id, str) and raw_id else _id_from_url(url)
        if not isinstance(rtype, str) or not rtype:
            issues.append(
                IngestIssue("unknown", rid, f"entry {index} has no resourceType; skipped")
            )
            continue
        entries.append(_Entry(resource, rtype, rid, url))
    return entries


def _id_from_url(full_url: str | None) -> str | None:
    if not full_url:
        return None
    if full_url.startswith("urn:uuid:"):
        return full_url.removeprefix("urn:uuid:")
    return full_url.rstrip("/").rsplit("/", 1)[-1] or None


def _reference_keys(entry: _Entry) -> set[str]:
    keys = set()
    if entry.resource_id:
        keys.add(f"{entry.resource_type}/{entry.resource_id}")
        keys.add(f"urn:uuid:{entry.resource_id}")
    if entry.full_url:
        keys.add(entry.full_url)
    return keys


def _select_patient(
    patients: list[tuple[_Entry, PatientRecord]], patient_id: str | None
) -> tuple[_Entry, PatientRecord]:
    if not patients:
        raise IngestError("no Patient resource in the bundle")
    if patient_id is not None:
        for entry, record in patients:
            if record.id == patient_id:
                return entry, record
        raise IngestError(f"Patient/{patient_id} is not in the bundle")
    if len(patients) > 1:
        ids = ", ".join(f"Patient/{r.id}" for _, r in patients)
        raise IngestError(f"the bundle holds {len(patients)} Patients ({ids}); pass patient_id")
    return patients[0]


def _about(entry: _Entry, patient_refs: set[str], issues: list[IngestIssue]) -> bool:
    """False (with an issue) when the resource is about another patient."""
    subject = entry.resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str) or ref in patient_refs:
        return True
    if any(ref.endswith("/" + p) for p in patient_refs if p.startswith("Patient/")):
        return True
    issues.append(
        IngestIssue(
            entry.resource_type,
            entry.resource_id,
            f"{entry.source} is about {ref}, not the twin's patient; skipped",
        )
    )
    return False


# -- memo of parsed records -------------------------------------------------------------

#: Parsed records by the content of the entry they came from. An EHR sends the same
#: resources on every chart open; validation is ~25x the cost of parsing the JSON, so
#: a resource seen before costs one serialisation and one hash instead. Records are
#: frozen and small; the bound keeps memory flat (about 20k records, a few MB).
_MEMO_MAX: Final = 20_000
_memo_records: OrderedDict[bytes, tuple[Any, tuple[IngestIssue, ...]]] = OrderedDict()
_memo_lock = threading.Lock()

_R = TypeVar("_R")


_memo_enabled = True


def clear_parse_memo() -> None:
    """Forget every remembered record (benchmarks measure the cold path with it)."""
    with _memo_lock:
        _memo_records.clear()


def set_parse_memo(enabled: bool) -> None:
    """Switch the memo on (default) or off: off, every entry is parsed and nothing is
    kept, which is how bench/load.py measures patients never seen before."""
    global _memo_enabled
    _memo_enabled = enabled
    if not enabled:
        clear_parse_memo()


def _memo(
    parse: Callable[[_Entry, list[IngestIssue]], _R], entry: _Entry, issues: list[IngestIssue]
) -> _R:
    """``parse(entry, issues)``, remembered by the entry's exact content.

    The key covers the parser, the fullUrl and the resource's JSON text, so two
    entries share a record only when everything the parser reads is the same.
    """
    if not _memo_enabled:
        return parse(entry, issues)
    # orjson: ~10x json.dumps on the cold path, where every entry is keyed and missed.
    # (It writes NaN as null; JSON off the wire has no NaN: orjson.loads refuses it.)
    try:
        text = orjson.dumps(entry.resource, default=str)
    except TypeError:  # an integer beyond 64 bits, from json.loads (the command line)
        text = json.dumps(entry.resource, separators=(",", ":"), default=str).encode()
    key = hashlib.blake2b(
        f"{parse.__name__}\x00{entry.full_url}\x00".encode() + text, digest_size=16
    ).digest()
    with _memo_lock:
        hit = _memo_records.get(key)
        if hit is not None:
            _memo_records.move_to_end(key)
    if hit is not None:
        issues.extend(hit[1])
        return hit[0]  # type: ignore[no-any-return]
    found: list[IngestIssue] = []
    record = parse(entry, found)
    issues.extend(found)
    with _memo_lock:
        _memo_records[key] = (record, tuple(found))
        if len(_memo_records) > _MEMO_MAX:
            _memo_records.popitem(last=False)
    return record


# -- validation ------------------------------------------------------------------------


@cache
def _known_fields(model: type[FHIRResourceModel]) -> frozenset[str]:
    names = {f.alias or n for n, f in model.model_fields.items()}
    return frozenset(names | {"resourceType"})


def _validate(
    entry: _Entry,
    model: type[FHIRResourceModel],
    keep: frozenset[str] | None,
    issues: list[IngestIssue],
) -> FHIRResourceModel | None:
    raw = entry.resource
    unknown = sorted(k for k in raw if k not in _known_fields(model))
    if unknown:
        issues.append(
            IngestIssue(
                entry.resource_type,
                entry.resource_id,
                f"{entry.source} has fields not defined in FHIR R4: {', '.join(unknown)}; skipped",
            )
        )
        return None
    projection = raw if keep is None else {k: v for k, v in raw.items() if k in keep}
    try:
        return model.model_validate(projection)
    except ValidationError as exc:
        issues.append(IngestIssue(entry.resource_type, entry.resource_id, _reason(entry, exc)))
        return None


def _reason(entry: _Entry, exc: ValidationError) -> str:
    """One line naming the first bad field, not pydantic's whole report."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "resource"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{entry.source} is not valid FHIR R4: {where}: {first['msg']}{more}; skipped"


# -- raw-dict helpers (cheap relevance tests before validation) ------------------------


def _codings(concept: object) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return []
    return [c for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _loinc_codes(concept: object) -> list[str]:
    return [c["code"] for c in _codings(concept) if c.get("system") in (LOINC_SYSTEM, None)]


def _observation_relevant(raw: Mapping[str, Any]) -> bool:
    if any(code in RELEVANT_OBSERVATION_LOINC for code in _loinc_codes(raw.get("code"))):
        return True
    components = raw.get("component")
    return isinstance(components, list) and any(
        isinstance(comp, dict)
        and any(code in LOINC_QUANTITY for code in _loinc_codes(comp.get("code")))
        for comp in components
    )


def _condition_relevant(raw: Mapping[str, Any]) -> bool:
    return any(concepts_for(c.get("system"), c["code"]) for c in _codings(raw.get("code")))


def _procedure_relevant(raw: Mapping[str, Any]) -> bool:
    return any(
        procedure_concepts_for(c.get("system"), c["code"]) for c in _codings(raw.get("code"))
    )


def _number(value: object) -> float | None:
    # FHIR JSON carries decimals as JSON numbers; a string "7.2" is invalid FHIR JSON
    # even though the R4B model would coerce it, so it is rejected here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _as_datetime(value: object) -> datetime | None:
    """FHIR date/dateTime/instant (as parsed by R4B) to an aware UTC datetime.

    A date or a partial date ("2020", "2020-05") is taken at its first instant; a
    time without an offset is taken as UTC.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:
            # e.g. 0001-01-01T00:00:00+14:00 has no UTC instant in Python's range.
            return None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        parts = value.split("-")
        try:
            year = int(parts[0])
            month = int(parts[1]) if len(parts) > 1 else 1
        except ValueError:
            return None
        return datetime(year, month, 1, tzinfo=UTC)
    return None


def _as_date(value: object) -> date | None:
    moment = _as_datetime(value)
    return moment.date() if moment is not None else None


# -- per resource type -----------------------------------------------------------------


def _dicts(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON array; anything else (unvalidated raw input) gives none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _patient(entry: _Entry, issues: list[IngestIssue]) -> PatientRecord | None:
    model = _validate(entry, Patient, _PATIENT_FIELDS, issues)
    if not isinstance(model, Patient):
        return None
    if entry.resource_id is None:
        issues.append(IngestIssue("Patient", None, "a Patient has no id and no fullUrl; skipped"))
        return None
    race: list[str] = []
    ethnicity: list[str] = []
    race_recorded = False
    for ext in _dicts(entry.resource.get("extension")):
        url = ext.get("url")
        if url not in (_US_CORE_RACE, _US_CORE_ETHNICITY):
            continue
        race_recorded = race_recorded or url == _US_CORE_RACE
        target = race if url == _US_CORE_RACE else ethnicity
        for sub in _dicts(ext.get("extension")):
            coding = sub.get("valueCoding")
            if sub.get("url") == "ombCategory" and isinstance(coding, dict) and coding.get("code"):
                target.append(str(coding["code"]))
    deceased_time = _as_datetime(model.deceasedDateTime)
    return PatientRecord(
        id=entry.resource_id,
        birth_date=_as_date(model.birthDate),
        gender=model.gender,
        race_omb=tuple(race),
        race_recorded=race_recorded,
        ethnicity_omb=tuple(ethnicity),
        deceased=bool(model.deceasedBoolean) or deceased_time is not None,
        deceased_time=deceased_time,
    )


def _observation_fields(entry: _Entry, issues: list[IngestIssue]) -> ObservationFields | None:
    """The fast path for a plainly well-formed Observation (twin_engine.wellformed);
    fhir.resources, with its reason for a refusal, for anything else."""
    raw = entry.resource
    if raw.keys() <= _known_fields(Observation):
        found = wellformed_observation({k: v for k, v in raw.items() if k in _OBSERVATION_FIELDS})
        if found is not None:
            return found
    model = _validate(entry, Observation, _OBSERVATION_FIELDS, issues)
    if not isinstance(model, Observation):
        return None
    period = model.effectivePeriod
    return ObservationFields(
        str(model.status),
        model.effectiveDateTime,
        model.effectiveInstant,
        period.start if period else None,
        model.issued,
    )


def _observation(entry: _Entry, issues: list[IngestIssue]) -> ObservationRecord | None:
    fields = _observation_fields(entry, issues)
    if fields is None:
        return None
    src, rtype, rid = entry.source, entry.resource_type, entry.resource_id
    if fields.status in _VOID_OBSERVATION_STATUS:
        issues.append(IngestIssue(rtype, rid, f"{src} has status {fields.status}; skipped"))
        return None
    time = _as_datetime(
        fields.effective_date_time
        or fields.effective_instant
        or fields.effective_period_start
        or fields.issued
    )
    if time is None:
        issues.append(IngestIssue(rtype, rid, f"{src} has no effective time; skipped"))
        return None

    raw = entry.resource
    codes = _loinc_codes(raw.get("code"))
    quantities: list[QuantityRecord] = []
    own = next((c for c in codes if c in LOINC_QUANTITY), None)
    if own is not None:
        quantity = _quantity(own, raw.get("valueQuantity"))
        if quantity is None:
            issues.append(IngestIssue(rtype, rid, _no_value(src, raw.get("valueQuantity"))))
            return None
        quantities.append(quantity)
    for comp in raw.get("component") or []:
        comp_code = next((c for c in _loinc_codes(comp.get("code")) if c in LOINC_QUANTITY), None)
        if comp_code is None:
            continue
        quantity = _quantity(comp_code, comp.get("valueQuantity"))
        if quantity is None:
            reason = _no_value(f"{src} component {comp_code}", comp.get("valueQuantity"))
            reason = reason.replace("; skipped", "; component skipped")
            issues.append(IngestIssue(rtype, rid, reason))
            continue
        quantities.append(quantity)

    smoking: tuple[CodingRecord, ...] = ()
    if SMOKING_STATUS_LOINC in codes:
        smoking = tuple(
            CodingRecord(c.get("system"), c["code"], c.get("display"))
            for c in _codings(raw.get("valueCodeableConcept"))
        )
        if not smoking:
            issues.append(
                IngestIssue(rtype, rid, f"{src} has no coded smoking status value; skipped")
            )
            return None
    if not quantities and not smoking:
        return None
    return ObservationRecord(src, time, tuple(quantities), smoking)


def _quantity(loinc: str, raw_quantity: object) -> QuantityRecord | None:
    if not isinstance(raw_quantity, dict):
        return None
    value = _number(raw_quantity.get("value"))
    if value is None:
        return None
    return QuantityRecord(loinc, value, raw_quantity.get("code"), raw_quantity.get("unit"))


def _no_value(what: str, raw_quantity: object) -> str:
    if not isinstance(raw_quantity, dict):
        return f"{what} has no valueQuantity; skipped"
    if "value" not in raw_quantity:
        return f"{what} has a valueQuantity without a value; skipped"
    return f"{what} has a valueQuantity.value that is not a JSON number; skipped"


def _condition(entry: _Entry, issues: list[IngestIssue]) -> ConditionRecord | None:
    model = _validate(entry, Condition, _CONDITION_FIELDS, issues)
    if not isinstance(model, Condition):
        return None
    verification = _first_code(entry.resource.get("verificationStatus"))
    if verification in _VOID_VERIFICATION_STATUS:
        issues.append(
            IngestIssue(
                "Condition", entry.resource_id, f"{entry.source} is {verification}; skipped"
            )
        )
        return None
    onset_period = model.onsetPeriod.start if model.onsetPeriod else None
    abatement_period = model.abatementPeriod.end if model.abatementPeriod else None
    return ConditionRecord(
        source=entry.source,
        codings=tuple(
            CodingRecord(c.get("system"), c["code"], c.get("display"))
            for c in _codings(entry.resource.get("code"))
        ),
        clinical_status=_first_code(entry.resource.get("clinicalStatus")),
        onset=_as_datetime(model.onsetDateTime or onset_period),
        abatement=_as_datetime(model.abatementDateTime or abatement_period),
        recorded=_as_datetime(model.recordedDate),
        verification_status=verification,
    )


def _procedure(entry: _Entry, issues: list[IngestIssue]) -> ProcedureRecord | None:
    model = _validate(entry, Procedure, _PROCEDURE_FIELDS, issues)
    if not isinstance(model, Procedure):
        return None
    status = str(model.status)
    if status in _VOID_PROCEDURE_STATUS:
        issues.append(
            IngestIssue("Procedure", entry.resource_id, f"{entry.source} is {status}; skipped")
        )
        return None
    period_start = model.performedPeriod.start if model.performedPeriod else None
    return ProcedureRecord(
        source=entry.source,
        codings=tuple(
            CodingRecord(c.get("system"), c["code"], c.get("display"))
            for c in _codings(entry.resource.get("code"))
        ),
        status=status,
        performed=_as_datetime(model.performedDateTime or period_start),
    )


def _first_code(concept: object) -> str | None:
    codings = _codings(concept)
    return str(codings[0]["code"]) if codings else None


def _medication_use(
    entry: _Entry,
    medications: Mapping[str, dict[str, Any]],
    patient_refs: set[str],
    issues: list[IngestIssue],
) -> MedicationRecord | None:
    raw = entry.resource
    concept = raw.get("medicationCodeableConcept")
    if concept is None:
        reference = raw.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, dict) else None
        medication = _resolve_medication(raw, ref, medications) if isinstance(ref, str) else None
        if medication is None or not isinstance(ref, str):
            issues.append(
                IngestIssue(
                    entry.resource_type,
                    entry.resource_id,
                    f"{entry.source} references medication {ref!r}, which is neither "
                    "contained nor in the bundle; skipped",
                )
            )
            return None
        if not ref.startswith("#"):
            # A bundled Medication is a resource the twin reads: validate it too.
            med_entry = _Entry(medication, "Medication", medication.get("id"), None)
            if _validate(med_entry, Medication, _MEDICATION_FIELDS, issues) is None:
                return None
        concept = medication.get("code")
    rxnorm = tuple(c["code"] for c in _codings(concept) if c.get("system") == RXNORM_SYSTEM)
    texts = tuple(
        t
        for t in [*(c.get("display") for c in _codings(concept)), _text(concept)]
        if isinstance(t, str) and t
    )
    if not classify_medication(rxnorm, texts) or not _about(entry, patient_refs, issues):
        return None
    model = _validate(
        entry, _MEDICATION_MODELS[entry.resource_type], _MEDICATION_USE_FIELDS, issues
    )
    if model is None:
        return None
    kind: MedicationKind
    authored = effective_start = effective_end = None
    if isinstance(model, MedicationRequest):
        kind = "MedicationRequest"
        authored = _as_datetime(model.authoredOn)
    else:
        assert isinstance(model, MedicationStatement | MedicationAdministration)  # noqa: S101
        kind = (
            "MedicationStatement"
            if isinstance(model, MedicationStatement)
            else "MedicationAdministration"
        )
        period = model.effectivePeriod
        point = _as_datetime(model.effectiveDateTime)
        effective_start = point or (_as_datetime(period.start) if period else None)
        effective_end = point or (_as_datetime(period.end) if period else None)
        if isinstance(model, MedicationStatement):
            authored = _as_datetime(model.dateAsserted)
        authored = authored or effective_start
    return MedicationRecord(
        source=entry.source,
        kind=kind,
        status=str(model.status),
        rxnorm_codes=rxnorm,
        texts=texts,
        authored=authored,
        effective_start=effective_start,
        effective_end=effective_end,
    )


def _text(concept: object) -> str | None:
    text = concept.get("text") if isinstance(concept, dict) else None
    return text if isinstance(text, str) else None


def _resolve_medication(
    raw: Mapping[str, Any], ref: str, medications: Mapping[str, dict[str, Any]]
) -> dict[str, Any] | None:
    if ref.startswith("#"):
        for contained in _dicts(raw.get("contained")):
            if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                return contained
        return None
    found = medications.get(ref)
    if found is None and "/Medication/" in ref:
        found = medications.get("Medication/" + ref.rsplit("/Medication/", 1)[1])
    return found
