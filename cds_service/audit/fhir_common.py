"""What every FHIR resource of the audit export shares: code systems, ids, the source,
and the entity naming the chained record (``cds_service.audit.fhir`` and
``cds_service.audit.fhir_population`` build on it)."""

from __future__ import annotations

import re
from typing import Any

from cds_service.audit.log import StoredAuditRecord

DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SYS_RECORD = "urn:twin-cds:audit-record"


def fhir_id(*parts: object) -> str:
    """A valid FHIR id ([A-Za-z0-9-.]{1,64}) from parts."""
    text = "-".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9\-.]", "-", text)[:64]


def instant(recorded_at: str) -> str:
    return recorded_at.replace("+00:00", "Z")


def detail(kind: str, value: object) -> dict[str, Any]:
    return {"type": kind, "valueString": str(value)}


def model_device_id(model: dict[str, Any]) -> str:
    return fhir_id("twin-cds-model", model["id"], model["version"])


def source() -> dict[str, Any]:
    return {
        "site": "twin-cds",
        "observer": {"display": "twin-cds audit trail"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }


def record_entity(rec: StoredAuditRecord) -> dict[str, Any]:
    return {
        "what": {"identifier": {"system": SYS_RECORD, "value": str(rec.seq)}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": [detail("recordHash", rec.record_hash), detail("prevHash", rec.prev_hash)],
    }
