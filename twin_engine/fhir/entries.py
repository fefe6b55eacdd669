"""Entries of a FHIR payload: a Bundle of any type, one resource, or a list of resources.

Every entry the reader cannot use is named and counted as an ``IngestIssue`` (never
dropped silently); only a payload unusable as a whole raises ``IngestError``. References
between entries are matched by ``Type/id``, ``urn:uuid:id`` and the entry's fullUrl.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final, TypeVar

from twin_engine.codes import LOINC_SYSTEM
from twin_engine.errors import IngestError


@dataclass(frozen=True, slots=True)
class IngestIssue:
    """An entry that was skipped (or partly skipped), and why."""

    resource_type: str
    resource_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Entry:
    resource: dict[str, Any]
    resource_type: str
    resource_id: str | None
    full_url: str | None

    @property
    def source(self) -> str:
        return f"{self.resource_type}/{self.resource_id or '?'}"

    def issue(self, reason: str) -> IngestIssue:
        return IngestIssue(self.resource_type, self.resource_id, reason)


#: An entry's fields, ``Entry(*fields)``: ``ingest`` makes the ``Entry`` only of a resource
#: it reads (most of a payload is not), and so it is not made for the others.
EntryFields = tuple[dict[str, Any], str, str | None, str | None]


def split_entry_fields(payload: object, issues: list[IngestIssue]) -> list[EntryFields]:
    """The resources of a payload, each with its type, id and fullUrl, as the fields of
    its ``Entry``."""
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
        items = zip(payload, repeat(None))
    else:
        raise IngestError(
            "payload must be a JSON object or array of FHIR resources, "
            f"not {type(payload).__name__}"
        )

    entries: list[EntryFields] = []
    for index, (resource, full_url) in enumerate(items):
        if resource is None:
            # Entries of a transaction-response or a search outcome may carry no resource.
            continue
        url = full_url if isinstance(full_url, str) else None
        if not isinstance(resource, dict):
            reason = f"entry {index} is not a JSON object; skipped"
            issues.append(IngestIssue("unknown", None, reason))
            continue
        rtype = resource.get("resourceType")
        raw_id = resource.get("id")
        rid = raw_id if isinstance(raw_id, str) and raw_id else id_from_url(url)
        if not isinstance(rtype, str) or not rtype:
            issues.append(
                IngestIssue("unknown", rid, f"entry {index} has no resourceType; skipped")
            )
            continue
        entries.append((resource, rtype, rid, url))
    return entries


def id_from_url(full_url: str | None) -> str | None:
    if not full_url:
        return None
    if full_url.startswith("urn:uuid:"):
        return full_url.removeprefix("urn:uuid:")
    return full_url.rstrip("/").rsplit("/", 1)[-1] or None


def reference_keys(entry: Entry) -> set[str]:
    """Every reference string that names this entry."""
    keys = set()
    if entry.resource_id:
        keys.add(f"{entry.resource_type}/{entry.resource_id}")
        keys.add(f"urn:uuid:{entry.resource_id}")
    if entry.full_url:
        keys.add(entry.full_url)
    return keys


_P = TypeVar("_P")


def select_patient(patients: list[tuple[Entry, _P]], patient_id: str | None) -> tuple[Entry, _P]:
    """The one Patient of the payload, or the one ``patient_id`` names."""
    if not patients:
        raise IngestError("no Patient resource in the bundle")
    if patient_id is not None:
        for entry, record in patients:
            if entry.resource_id == patient_id:
                return entry, record
        raise IngestError(f"Patient/{patient_id} is not in the bundle")
    if len(patients) > 1:
        ids = ", ".join(e.source for e, _ in patients)
        raise IngestError(f"the bundle holds {len(patients)} Patients ({ids}); pass patient_id")
    return patients[0]


#: Patient/<id> alone or at the end of an absolute URL, optionally versioned (R4 3.1.3.2).
_PATIENT_URL: Final = re.compile(r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]+)?$")


@dataclass(frozen=True, slots=True)
class PatientRef:
    """The twin's patient as references name it: the one rule of both readers (the twin's
    ``about`` and the dose history's ``belongs``).

    R4 names a patient by ``Patient/<id>`` (optionally ``/_history/<v>``), by an absolute
    URL ending so, or inside a bundle by the Patient entry's ``fullUrl`` (``urn:uuid:...``;
    ``urn:uuid:<id>`` too, as every entry of this reader is matched).
    """

    id: str
    full_url: str | None = None
    #: False when the reader holds bare resources, not the bundle's entries: a urn:uuid
    #: reference cannot then be told to be the patient's fullUrl or another entry's.
    entries_known: bool = True

    def named_by(self, ref: str) -> bool | None:
        """True: the patient; False: another resource; None: cannot be told (above)."""
        if ref == self.full_url or (ref.startswith("urn:uuid:") and ref[9:] == self.id):
            return True
        found = _PATIENT_URL.search(ref)
        if found:
            return found.group(1) == self.id
        if ref.startswith("urn:uuid:") and not self.entries_known:
            return None
        return False

    def unchecked(self, where: str, ref: str) -> str:
        return (
            f"{where} names its patient as {ref!r}, which cannot be checked against "
            f"Patient/{self.id}; taken as this patient's (the record holds one Patient)"
        )


def about(entry: Entry, patient: PatientRef, issues: list[IngestIssue]) -> bool:
    """False (with an issue) when the resource's subject is not the twin's patient."""
    subject = entry.resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        return True
    named = patient.named_by(ref)
    if named is None:
        issues.append(entry.issue(patient.unchecked(entry.source, ref)))
    elif not named:
        issues.append(
            entry.issue(f"{entry.source} is about {ref}, not the twin's patient; skipped")
        )
    return named is not False


# -- raw-dict helpers (cheap relevance tests before any check) ----------------------------


def dicts(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON array; anything else (unvalidated raw input) gives none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def codings(concept: object) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept that carry a string code."""
    if not isinstance(concept, dict):
        return []
    return [c for c in dicts(concept.get("coding")) if isinstance(c.get("code"), str)]


_LOINC_OR_NONE: Final = (LOINC_SYSTEM, None)


def loinc_codes(concept: object) -> list[str]:
    """The LOINC (or system-less) codes of a CodeableConcept: ``codings`` filtered, in one
    pass (it runs on every Observation of a payload, to decide its relevance)."""
    found = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(found, list):
        return []
    if len(found) == 1:  # the common case, without a comprehension's frame
        c = found[0]
        if (
            isinstance(c, dict)
            and isinstance(code := c.get("code"), str)
            and c.get("system") in _LOINC_OR_NONE
        ):
            return [code]
        return []
    return [
        code
        for c in found
        if isinstance(c, dict)
        and isinstance(code := c.get("code"), str)
        and c.get("system") in _LOINC_OR_NONE
    ]


def first_code(concept: object) -> str | None:
    found = codings(concept)
    return str(found[0]["code"]) if found else None


def concept_text(concept: object) -> str | None:
    text = concept.get("text") if isinstance(concept, dict) else None
    return text if isinstance(text, str) else None
