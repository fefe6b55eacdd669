"""``ingest``: one patient's FHIR R4 payload in, the twin's record types out.

A payload (Bundle of any type, single resource, or list of resources) is split into
entries (``entries``); relevance is decided on the raw dict, cheaply, and only relevant
entries are checked and read (``records``, ``medications``). A bad entry becomes an
``IngestIssue`` and is skipped; only an unusable payload as a whole raises ``IngestError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twin_engine.fhir.entries import (
    Entry,
    IngestIssue,
    PatientRef,
    about,
    reference_keys,
    select_patient,
    split_entry_fields,
)
from twin_engine.fhir.medications import MEDICATION_KINDS, MedicationRecord, read_medication_use
from twin_engine.fhir.memo import memo
from twin_engine.fhir.records import (
    ConditionRecord,
    ObservationRecord,
    PatientRecord,
    ProcedureRecord,
    condition_relevant,
    observation_codes,
    procedure_relevant,
    read_condition,
    read_observation,
    read_patient,
    read_procedure,
)

DomainResource = (
    PatientRecord | ObservationRecord | ConditionRecord | MedicationRecord | ProcedureRecord
)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The relevant resources of one patient, parsed, and the issues met on the way."""

    patient: PatientRecord
    resources: tuple[DomainResource, ...]
    issues: tuple[IngestIssue, ...]


def ingest(payload: object, *, patient_id: str | None = None) -> IngestResult:
    """Parse a FHIR R4 payload into the twin's record types.

    `payload` is a parsed JSON dict (a Bundle of any type or one resource) or a list
    of resource dicts.  Raises IngestError when the payload is not FHIR, holds no
    Patient, holds several Patients and `patient_id` does not pick one, or
    `patient_id` names a Patient that is not there.
    """
    issues: list[IngestIssue] = []
    # Each entry as its fields: the Entry is made only of a resource that is read.
    entries = split_entry_fields(payload, issues)

    patients: list[tuple[Entry, PatientRecord]] = []
    medications: dict[str, dict[str, Any]] = {}
    for fields in entries:
        kind = fields[1]
        if kind == "Patient":
            entry = Entry(*fields)
            found = memo(read_patient, entry, issues)
            if found is not None:
                patients.append((entry, found))
        elif kind == "Medication":
            for key in reference_keys(Entry(*fields)):
                medications[key] = fields[0]
    patient_entry, patient = select_patient(patients, patient_id)
    patient_ref = PatientRef(patient.id, patient_entry.full_url)

    resources: list[DomainResource] = [patient]
    for fields in entries:
        record: DomainResource | None = None
        raw, kind = fields[0], fields[1]
        if kind == "Observation":
            codes = observation_codes(raw)
            if codes is not None and about(entry := Entry(*fields), patient_ref, issues):
                record = memo(read_observation, entry, issues, codes)
        elif kind == "Condition":
            if condition_relevant(raw) and about(entry := Entry(*fields), patient_ref, issues):
                record = memo(read_condition, entry, issues)
        elif kind in MEDICATION_KINDS:
            record = read_medication_use(Entry(*fields), medications, patient_ref, issues)
        elif (
            kind == "Procedure"
            and procedure_relevant(raw)
            and about(entry := Entry(*fields), patient_ref, issues)
        ):
            record = memo(read_procedure, entry, issues)
        if record is not None:
            resources.append(record)
    return IngestResult(patient=patient, resources=tuple(resources), issues=tuple(issues))
