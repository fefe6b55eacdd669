"""Audit records as FHIR R4 resources, for auditors and their tools.

A ``hook`` record becomes:

- an **AuditEvent**: type ``rest`` (audit-event-type, "RESTful Operation": the EHR
  invoked our CDS service over HTTP), subtype ``operation`` (restful-interaction), action
  ``E`` (Execute: "perform a system or application function ... or a query/search"),
  outcome from the call's status; agents: the clinician (the requestor, CDS Hooks
  ``userId``), the EHR that signed the call (its ``iss``/tenant), our service; entities:
  the patient (role 1 Patient), the twin version the model saw, the model (id, version,
  sha256), the RiskAssessment produced, and the record's chain hash.
- a **RiskAssessment** (when the record has probability outputs): subject the patient,
  method the model (Coding with version), basis the FHIR resources the inputs came
  from, one prediction per output with ``probabilityDecimal`` and the top factors as
  rationale.
- a **Provenance** targeting that RiskAssessment: the model (a Device) as author, our
  service as assembler, the input resources as ``source`` entities and the twin version
  as ``derivation``.
- one **Device** per model version (emitted once per export).

``feedback`` records become AuditEvents (type rest, subtype ``create``, action C) whose
entity is the hook record's AuditEvent and the card, with the outcome and reason code.
``auditor-read`` records become AuditEvents of type DICOM DCM 110112 "Query" (action E).
``app-access`` records become AuditEvents of type DICOM DCM 110110 "Patient Record"
(action R): the clinician (fhirUser) read the patient's twin in the app.
``population-run`` records (one ``twin-cds population build``) become AuditEvents of type
DICOM DCM 110107 "Import" (action E): entities are the inputs (each NDJSON file, the
``$export`` it came from), each model (a Device, with its sha256), the table written with
its counts, and the errors; the outcome says whether the run completed.
Checkpoints are chain machinery and are not exported.

The dicts here are plain JSON; the tests validate every one with fhir.resources.R4B.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from cds_service.audit.chain import CHAIN_BROKEN
from cds_service.audit.fhir_common import DICOM, ENTITY_TYPE, OBJECT_ROLE, SYS_RECORD, fhir_id
from cds_service.audit.fhir_common import detail as _detail
from cds_service.audit.fhir_common import instant as _instant
from cds_service.audit.fhir_common import model_device_id as _model_device_id
from cds_service.audit.fhir_common import record_entity as _record_entity
from cds_service.audit.fhir_common import source as _source
from cds_service.audit.fhir_population import population_run_audit_event
from cds_service.audit.log import StoredAuditRecord

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
UCUM = "http://unitsofmeasure.org"

# Identifier systems of this service (URNs: no resolvable namespace is claimed).
SYS_MODEL = "urn:twin-cds:model"
SYS_MODEL_SHA256 = "urn:twin-cds:model-sha256"
SYS_TWIN = "urn:twin-cds:twin-version"
SYS_HOOK_INSTANCE = "urn:twin-cds:hook-instance"
SYS_CLIENT_ISS = "urn:twin-cds:cds-client-iss"
SYS_AUDITOR_ISS = "urn:twin-cds:auditor-iss"
SYS_CARD = "urn:twin-cds:card"

# AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure (R4 audit-event-outcome).
_OUTCOME = {"ok": "0", "no-card": "0", "data-unavailable": "4", "bad-request": "4", "error": "8"}
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_HORIZON = re.compile(r"(\d+)y(?:_|$)")


def _reference(text: str | None, resource_type: str) -> dict[str, Any] | None:
    """A reference from an id ("123") or a relative reference ("Patient/123")."""
    if not text:
        return None
    if _REFERENCE.match(text):
        return {"reference": text}
    if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text):
        return {"reference": f"{resource_type}/{text}"}
    return {"display": text}


def model_device(model: dict[str, Any]) -> dict[str, Any]:
    """The model version as a Device (software), named by id, version and file hash."""
    return {
        "resourceType": "Device",
        "id": _model_device_id(model),
        "identifier": [
            {"system": SYS_MODEL, "value": f"{model['id']}|{model['version']}"},
            {"system": SYS_MODEL_SHA256, "value": model["sha256"]},
        ],
        "deviceName": [{"name": str(model["id"]), "type": "model-name"}],
        "version": [{"value": str(model["version"])}],
        "type": {"text": "ONNX clinical prediction model (software)"},
    }


def _is_probability(name: str, value: object) -> bool:
    return (
        isinstance(value, int | float)
        and 0.0 <= float(value) <= 1.0
        and ("risk" in name or "probability" in name)
    )


def _sources(body: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for item in body.get("inputs") or []:
        for source in item.get("sources") or []:
            if isinstance(source, str) and _REFERENCE.match(source):
                seen[source] = None
    return list(seen)


def _twin_identifier(body: dict[str, Any]) -> dict[str, Any] | None:
    twin = body.get("twin")
    if not twin:
        return None
    return {"system": SYS_TWIN, "value": f"Patient/{body['patient']}/_history/{twin['version']}"}


def risk_assessment(rec: StoredAuditRecord) -> dict[str, Any] | None:
    """The record's risk outputs as a RiskAssessment, or None when it has none."""
    body = rec.body
    outputs = {k: v for k, v in (body.get("outputs") or {}).items() if _is_probability(k, v)}
    model = body.get("model")
    if not outputs or not model or not body.get("patient"):
        return None
    top = sorted(body.get("explanation") or [], key=lambda e: -abs(e["contribution"]))[:5]
    rationale = "; ".join(f"{e['feature']}={e['value']:g} ({e['contribution']:+.4f})" for e in top)
    predictions = []
    for name, value in outputs.items():
        prediction: dict[str, Any] = {"outcome": {"text": name}, "probabilityDecimal": value}
        horizon = _HORIZON.search(name)
        if horizon:
            years = int(horizon.group(1))
            prediction["whenRange"] = {
                "high": {"value": years, "unit": "a", "system": UCUM, "code": "a"}
            }
        if rationale:
            prediction["rationale"] = f"largest contributions to the primary output: {rationale}"
        predictions.append(prediction)
    out: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": fhir_id("twin-cds-ra", rec.seq),
        "identifier": [{"system": SYS_RECORD, "value": str(rec.seq)}],
        "status": "final",
        "subject": _reference(body["patient"], "Patient"),
        "occurrenceDateTime": _instant(rec.recorded_at),
        "method": {
            "coding": [
                {
                    "system": SYS_MODEL,
                    "version": str(model["version"]),
                    "code": str(model["id"]),
                }
            ],
            "text": f"{model['id']} {model['version']} (sha256 {model['sha256']})",
        },
        "performer": {"reference": f"Device/{_model_device_id(model)}"},
        "prediction": predictions,
    }
    encounter = _reference(body.get("encounter"), "Encounter")
    if encounter:
        out["encounter"] = encounter
    basis = [{"reference": s} for s in _sources(body)]
    if basis:
        out["basis"] = basis
    return out


def provenance(rec: StoredAuditRecord, target_id: str) -> dict[str, Any]:
    """Who and what produced the RiskAssessment ``target_id``."""
    body = rec.body
    model = body["model"]
    entities: list[dict[str, Any]] = [
        {"role": "source", "what": {"reference": s}} for s in _sources(body)
    ]
    twin = _twin_identifier(body)
    if twin:
        entities.append(
            {
                "role": "derivation",
                "what": {"identifier": twin, "display": f"twin {body['twin']['contentHash']}"},
            }
        )
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": fhir_id("twin-cds-prov", rec.seq),
        "target": [{"reference": f"RiskAssessment/{target_id}"}],
        "recorded": _instant(rec.recorded_at),
        "agent": [
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT, "code": "author"}]},
                "who": {"reference": f"Device/{_model_device_id(model)}"},
            },
            {
                "type": {"coding": [{"system": PROVENANCE_AGENT, "code": "assembler"}]},
                "who": {"display": f"twin-cds service {body['service']}"},
            },
        ],
    }
    if entities:
        out["entity"] = entities
    return out


def hook_audit_event(rec: StoredAuditRecord, risk_id: str | None) -> dict[str, Any]:
    body = rec.body
    client = body.get("client") or {}
    agents: list[dict[str, Any]] = []
    user = _reference(body.get("user"), "Practitioner")
    if user:
        agents.append({"who": user, "requestor": True})
    if client.get("iss"):
        client_agent: dict[str, Any] = {
            "who": {
                "identifier": {"system": SYS_CLIENT_ISS, "value": client["iss"]},
                "display": f"CDS client {client['iss']}"
                + (f" (tenant {client['tenant']})" if client.get("tenant") else ""),
            },
            "requestor": not user,
            "type": {"coding": [{"system": DICOM, "code": "110153", "display": "Source Role ID"}]},
        }
        if client.get("jti"):
            client_agent["altId"] = f"jti {client['jti']}"
        agents.append(client_agent)
    agents.append(
        {
            "who": {"display": f"twin-cds service {body['service']}"},
            "requestor": not agents,
            "type": {
                "coding": [{"system": DICOM, "code": "110152", "display": "Destination Role ID"}]
            },
        }
    )
    entities: list[dict[str, Any]] = []
    patient = _reference(body.get("patient"), "Patient")
    if patient:
        entities.append(_patient_entity(patient))
    twin = _twin_identifier(body)
    if twin:
        entities.append(
            {
                "what": {"identifier": twin},
                "name": "twin version",
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "detail": [_detail("contentHash", body["twin"]["contentHash"])],
            }
        )
    model = body.get("model")
    if model:
        entities.append(
            {
                "what": {"reference": f"Device/{_model_device_id(model)}"},
                "name": f"model {model['id']} {model['version']}",
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "detail": [_detail("sha256", model["sha256"])],
            }
        )
    if risk_id:
        entities.append(
            {
                "what": {"reference": f"RiskAssessment/{risk_id}"},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    hook_entity = {
        "what": {"identifier": {"system": SYS_HOOK_INSTANCE, "value": body["hookInstance"]}},
        "name": f"{body['hook']} call",
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": [_detail("card", c["uuid"]) for c in body.get("cards") or [] if "uuid" in c]
        + ([_detail("error", body["error"])] if body.get("error") else []),
    }
    if not hook_entity["detail"]:
        del hook_entity["detail"]
    entities += [hook_entity, _record_entity(rec)]
    return {
        "resourceType": "AuditEvent",
        "id": fhir_id("twin-cds-audit", rec.seq),
        "type": {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL_INTERACTION, "code": "operation"}],
        "action": "E",
        "recorded": _instant(rec.recorded_at),
        "outcome": _OUTCOME.get(body.get("status", ""), "8"),
        "outcomeDesc": body.get("status", ""),
        "agent": agents,
        "source": _source(),
        "entity": entities,
    }


def feedback_audit_event(rec: StoredAuditRecord) -> dict[str, Any]:
    body = rec.body
    feedback = body["feedback"]
    details = [_detail("outcome", feedback["outcome"])]
    details.append(_detail("outcomeTimestamp", feedback.get("outcomeTimestamp", "")))
    reason = (feedback.get("overrideReason") or {}).get("reason") or {}
    if reason.get("code"):
        details.append(_detail("overrideReason", f"{reason.get('system', '')}|{reason['code']}"))
    for suggestion in feedback.get("acceptedSuggestions") or []:
        details.append(_detail("acceptedSuggestion", suggestion.get("id", "")))
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"AuditEvent/{fhir_id('twin-cds-audit', body['hookRecord'])}"},
            "name": "the recommendation's audit event",
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        },
        {
            "what": {"identifier": {"system": SYS_CARD, "value": body["card"]}},
            "name": "card",
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "detail": details,
        },
    ]
    patient = _reference(body.get("patient"), "Patient")
    if patient:
        entities.insert(0, _patient_entity(patient))
    iss = (body.get("client") or {}).get("iss")
    return {
        "resourceType": "AuditEvent",
        "id": fhir_id("twin-cds-audit", rec.seq),
        "type": {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL_INTERACTION, "code": "create"}],
        "action": "C",
        "recorded": _instant(rec.recorded_at),
        "outcome": "0",
        "outcomeDesc": f"clinician feedback: {feedback['outcome']}",
        "agent": [
            {
                "who": (
                    {"identifier": {"system": SYS_CLIENT_ISS, "value": iss}}
                    if iss
                    else {"display": "unauthenticated CDS client (development)"}
                ),
                "requestor": True,
            }
        ],
        "source": _source(),
        "entity": [*entities, _record_entity(rec)],
    }


def auditor_read_audit_event(rec: StoredAuditRecord) -> dict[str, Any]:
    body = rec.body
    auditor = body["auditor"]
    query = orjson.dumps(body["query"], option=orjson.OPT_SORT_KEYS).decode()
    return {
        "resourceType": "AuditEvent",
        "id": fhir_id("twin-cds-audit", rec.seq),
        "type": {"system": DICOM, "code": "110112", "display": "Query"},
        "action": "E",
        "recorded": _instant(rec.recorded_at),
        "outcome": "0",
        "outcomeDesc": f"auditor {body['action']}: {body['returned']} record(s)",
        "agent": [
            {
                "who": {
                    "identifier": {"system": SYS_AUDITOR_ISS, "value": auditor["iss"]},
                    "display": auditor["sub"],
                },
                "altId": auditor["sub"],
                "requestor": True,
                "role": [{"text": "auditor"}],
            }
        ],
        "source": _source(),
        "entity": [
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "name": f"audit {body['action']}",
                "description": query,
                "detail": [_detail("returnedSeqs", ",".join(str(s) for s in body["seqs"]))],
            },
            _record_entity(rec),
        ],
    }


def app_access_audit_event(rec: StoredAuditRecord) -> dict[str, Any]:
    body = rec.body
    user = _reference(body.get("user"), "Practitioner") or {"display": "unidentified user"}
    patient = _reference(body.get("patient"), "Patient") or {"display": "unknown patient"}
    return {
        "resourceType": "AuditEvent",
        "id": fhir_id("twin-cds-audit", rec.seq),
        "type": {"system": DICOM, "code": "110110", "display": "Patient Record"},
        "action": "R",
        "recorded": _instant(rec.recorded_at),
        "outcome": "0",
        "outcomeDesc": f"clinician app opened by {body['launch']} launch from {body['ehr']}",
        "agent": [
            {
                "who": user,
                "requestor": True,
                "role": [{"text": "clinician"}],
            },
            {
                "who": {"identifier": {"system": SYS_CLIENT_ISS, "value": body["ehr"]}},
                "requestor": False,
                "role": [{"text": "EHR (SMART authorization server)"}],
            },
        ],
        "source": _source(),
        "entity": [_patient_entity(patient), _record_entity(rec)],
    }


def _patient_entity(patient: dict[str, Any]) -> dict[str, Any]:
    """The patient an event is about (entity type 1 Person, role 1 Patient)."""
    return {
        "what": patient,
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }


def damaged_audit_event(rec: StoredAuditRecord) -> dict[str, Any]:
    """A record whose stored body cannot be read: a DICOM DCM 110113 "Security Alert"
    (serious failure) naming the record, why, and the chain's status there."""
    entity = _record_entity(rec)
    entity["detail"] += [_detail("damage", rec.damage), _detail("chain", CHAIN_BROKEN)]
    return {
        "resourceType": "AuditEvent",
        "id": fhir_id("twin-cds-audit", rec.seq),
        "type": {"system": DICOM, "code": "110113", "display": "Security Alert"},
        "action": "E",
        "recorded": _instant(rec.recorded_at),
        "outcome": "8",
        "outcomeDesc": f"record {rec.seq}: {rec.damage}; the chain is {CHAIN_BROKEN}",
        # The agent that found it: the trail reading its own store.
        "agent": [{"who": {"display": "twin-cds audit trail"}, "requestor": False}],
        "source": _source(),
        "entity": [entity],
    }


def record_resources(rec: StoredAuditRecord) -> list[dict[str, Any]]:
    """The FHIR resources of one record (no Device; see ``export_resources``)."""
    if rec.damage:
        return [damaged_audit_event(rec)]
    if rec.kind == "hook":
        risk = risk_assessment(rec)
        if risk is None:
            return [hook_audit_event(rec, None)]
        return [hook_audit_event(rec, risk["id"]), risk, provenance(rec, risk["id"])]
    if rec.kind == "feedback":
        return [feedback_audit_event(rec)]
    if rec.kind == "auditor-read":
        return [auditor_read_audit_event(rec)]
    if rec.kind == "app-access":
        return [app_access_audit_event(rec)]
    if rec.kind == "population-run":
        return [population_run_audit_event(rec)]
    return []


def export_resources(records: Iterable[StoredAuditRecord]) -> Iterator[dict[str, Any]]:
    """Every record's resources, each model version's Device before its first use."""
    devices: set[str] = set()
    for rec in records:
        used = (
            [rec.body.get("model"), *(rec.body.get("otherModels") or [])]
            if rec.kind == "hook"
            else list(rec.body.get("models") or [])
            if rec.kind == "population-run"
            else []
        )
        for model in used:
            if model and _model_device_id(model) not in devices:
                devices.add(_model_device_id(model))
                yield model_device(model)
        yield from record_resources(rec)


def to_ndjson(resources: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """FHIR bulk-data NDJSON: one resource per line."""
    for resource in resources:
        yield orjson.dumps(resource) + b"\n"
