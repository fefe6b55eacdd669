"""MedicationRequest, MedicationStatement and MedicationAdministration records, with the
medication resolved (inline concept, contained ``#id``, or a Medication entry) and classed
by RxNorm ingredient (``twin_engine.medications``).

``medication_concept`` is the one resolver of "which medication does this resource name",
used by the twin's records, the dose history and the vancomycin draft reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from twin_engine.codes import RXNORM_SYSTEM
from twin_engine.fhir.elements import wellformed_medication, wellformed_medication_use
from twin_engine.fhir.entries import (
    Entry,
    IngestIssue,
    PatientRef,
    about,
    codings,
    concept_text,
    dicts,
)
from twin_engine.fhir.records import checked_fields
from twin_engine.fhir.shape import as_datetime
from twin_engine.fhir.validate import medication_use_fields, unknown_fields, validate
from twin_engine.medications import classify_medication

MedicationKind = Literal["MedicationRequest", "MedicationStatement", "MedicationAdministration"]
MEDICATION_KINDS: Final = frozenset(
    {"MedicationRequest", "MedicationStatement", "MedicationAdministration"}
)
MEDICATION_USE_FIELDS: Final = frozenset(
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


def resolve_medication(
    raw: Mapping[str, Any], ref: str, medications: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The Medication a reference names: contained (``#id``) or another entry, by any of
    the keys ``entries.reference_keys`` gives it (or ``[base/]Medication/id``)."""
    if ref.startswith("#"):
        for contained in dicts(raw.get("contained")):
            if contained.get("id") == ref[1:]:
                return contained
        return None
    found = medications.get(ref)
    if found is None and "/Medication/" in ref:
        found = medications.get("Medication/" + ref.rsplit("/Medication/", 1)[1])
    return found


def medication_concept(
    raw: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> object:
    """medicationCodeableConcept, or the code of the Medication medicationReference names
    (None when it names none the payload holds)."""
    if "medicationCodeableConcept" in raw:
        return raw["medicationCodeableConcept"]
    reference = raw.get("medicationReference")
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str):
        return None
    found = resolve_medication(raw, ref, medications)
    return found.get("code") if found is not None else None


def rxnorm_and_texts(concept: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The RxNorm codes of a medication concept and its display texts."""
    found = codings(concept)  # walked once for both
    rxnorm = tuple(c["code"] for c in found if c.get("system") == RXNORM_SYSTEM)
    texts = tuple(
        t
        for t in [*(c.get("display") for c in found), concept_text(concept)]
        if isinstance(t, str) and t
    )
    return rxnorm, texts


def read_medication_use(
    entry: Entry,
    medications: Mapping[str, Mapping[str, Any]],
    patient: PatientRef,
    issues: list[IngestIssue],
) -> MedicationRecord | None:
    """A medication the twin classes (statin, antihypertensive, ...), or None."""
    raw = entry.resource
    concept = raw.get("medicationCodeableConcept")
    if concept is None:
        reference = raw.get("medicationReference")
        ref = reference.get("reference") if isinstance(reference, dict) else None
        medication = resolve_medication(raw, ref, medications) if isinstance(ref, str) else None
        if medication is None or not isinstance(ref, str):
            issues.append(
                entry.issue(
                    f"{entry.source} references medication {ref!r}, which is neither "
                    "contained nor in the bundle; skipped"
                )
            )
            return None
        if not ref.startswith("#") and not _medication_ok(medication, issues):
            return None
        concept = medication.get("code")
    rxnorm, texts = rxnorm_and_texts(concept)
    if not classify_medication(rxnorm, texts) or not about(entry, patient, issues):
        return None
    fields = checked_fields(
        entry, MEDICATION_USE_FIELDS, wellformed_medication_use, medication_use_fields, issues
    )
    if fields is None:
        return None
    kind: MedicationKind = entry.resource_type  # type: ignore[assignment]
    authored = as_datetime(fields.authored)
    effective_start = effective_end = None
    if kind != "MedicationRequest":
        point = as_datetime(fields.effective_date_time)
        effective_start = point or as_datetime(fields.effective_start)
        effective_end = point or as_datetime(fields.effective_end)
        authored = authored or effective_start
    return MedicationRecord(
        source=entry.source,
        kind=kind,
        status=fields.status,
        rxnorm_codes=rxnorm,
        texts=texts,
        authored=authored,
        effective_start=effective_start,
        effective_end=effective_end,
    )


def _medication_ok(medication: Mapping[str, Any], issues: list[IngestIssue]) -> bool:
    """A bundled Medication is a resource the twin reads: checked like the others."""
    rid = medication.get("id")
    entry = Entry(dict(medication), "Medication", rid if isinstance(rid, str) else None, None)
    if unknown_fields(entry, issues):
        return False
    if wellformed_medication({k: v for k, v in medication.items() if k in _MEDICATION_FIELDS}):
        return True
    return validate(entry, _MEDICATION_FIELDS, issues) is not None
