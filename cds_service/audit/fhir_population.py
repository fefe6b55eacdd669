"""A ``population-run`` record (one ``twin-cds population build``) as a FHIR R4
AuditEvent: type DICOM DCM 110107 "Import" (the run imports a panel's data), action E;
entities: the inputs (each NDJSON file, the ``$export`` it came from), each model (a
Device, with its sha256), the table written with its counts, and the errors; outcome 0
complete, 4 some partitions failed, 8 the cluster went away."""

from __future__ import annotations

from typing import Any

from cds_service.audit.fhir_common import (
    DICOM,
    ENTITY_TYPE,
    OBJECT_ROLE,
    detail,
    fhir_id,
    instant,
    model_device_id,
    record_entity,
    source,
)
from cds_service.audit.log import StoredAuditRecord

# A population run: complete, some partitions failed, or the cluster went away.
_RUN_OUTCOME = {"complete": "0", "incomplete": "4", "interrupted": "8"}
_SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}


def population_run_audit_event(rec: StoredAuditRecord) -> dict[str, Any]:
    """One population build: what it read, which models ran, what it wrote and counted."""
    body = rec.body
    origin = body.get("source") or {}
    inputs: list[dict[str, Any]] = [
        {
            "what": {"display": str(f["path"])},
            "name": "input NDJSON",
            "type": _SYSTEM_OBJECT,
            "detail": [detail("bytes", f.get("bytes")), detail("mtimeNs", f.get("mtimeNs"))],
        }
        for f in body.get("inputs") or []
    ]
    if origin.get("bulkExport"):
        inputs.insert(
            0,
            {
                "what": {"display": f"{origin['bulkExport']} $export"},
                "name": "FHIR Bulk Data export",
                "type": _SYSTEM_OBJECT,
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "detail": [
                    detail(k, origin[k])
                    for k in ("request", "transactionTime", "errorFiles")
                    if origin.get(k) is not None
                ],
            },
        )
    models = [
        {
            "what": {"reference": f"Device/{model_device_id(m)}"},
            "name": f"model {m['id']} {m['version']}",
            "type": _SYSTEM_OBJECT,
            "detail": [detail("sha256", m["sha256"])],
        }
        for m in body.get("models") or []
    ]
    counts = body.get("counts") or {}
    partitions = body.get("partitions") or {}
    split = (body.get("split") or {}).get("stats") or {}
    details = [detail("asOf", body.get("asOf"))]
    details += [
        detail(k, counts[k])
        for k in ("patients", "rows", "unknownPatients", "ingestFailures", "duplicatesReplaced")
        if k in counts
    ]
    details += [detail(f"partitions.{k}", v) for k, v in sorted(partitions.items())]
    if "malformedLines" in split:
        details.append(detail("malformedLines", split["malformedLines"]))
    details += [detail("error", e) for e in body.get("errors") or []]
    table = {
        "what": {"display": str(body.get("out", ""))},
        "name": "population table (Parquet)",
        "type": _SYSTEM_OBJECT,
        "detail": details,
    }
    cluster = body.get("cluster") or {}
    status = str(body.get("status", ""))
    return {
        "resourceType": "AuditEvent",
        "id": fhir_id("twin-cds-audit", rec.seq),
        "type": {"system": DICOM, "code": "110107", "display": "Import"},
        "action": "E",
        "recorded": instant(rec.recorded_at),
        "outcome": _RUN_OUTCOME.get(status, "8"),
        "outcomeDesc": f"population build {status}",
        "agent": [
            {
                "who": {"display": "twin-cds population build"},
                "requestor": True,
                "role": [
                    {
                        "text": f"Dask scheduler {cluster.get('scheduler', '?')}, "
                        f"{cluster.get('workers', '?')} worker(s)"
                    }
                ],
            }
        ],
        "source": source(),
        "entity": [*inputs, *models, table, record_entity(rec)],
    }
