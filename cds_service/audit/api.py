"""The auditor API: query, fetch, verify and export the audit trail (``/audit/...``).

Only auditors get in (``audit_auth``: their own issuers, audience and role; CDS-client
tokens and anonymous calls are refused). Every read is itself appended to the chain
as an ``auditor-read`` record (who, which query, which record seqs) before the answer
is sent, so a read that could not be audited is not answered.

    GET /audit/records            query: patient, service, model, modelVersion, status,
                                  outcome, since, until, kind, after, limit
    GET /audit/records/{seq}      one record, its feedback, and its hash check
    GET /audit/export             the same query as FHIR R4 NDJSON
    GET /audit/verify             the chain report
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from cds_service.audit.auth import Auditor
from cds_service.audit.fhir import export_resources, to_ndjson
from cds_service.audit.log import (
    AuditorRead,
    AuditorReadAction,
    AuditQuery,
    ChainedAuditLog,
    RecordKind,
    StoredAuditRecord,
    record_tenant,
)
from cds_service.audit.sql import verify_key_from
from cds_service.errors import OutsideAuditorTenant, PageTooLarge, RecordNotFound
from cds_service.http.deps import AuditorVerifierDep, RuntimeDep, SettingsDep

MAX_PAGE = 1000
MAX_EXPORT = 10_000

router = APIRouter(prefix="/audit", tags=["audit"])


def require_auditor(request: Request, verifier: AuditorVerifierDep) -> Auditor:
    """The auditor behind the call, or AuditorUnauthorized / AuditorForbidden (a bare
    401/403 at the edge; the reason stays in our log)."""
    return verifier.verify(request.headers.getlist("authorization"))


def get_log(rt: RuntimeDep) -> ChainedAuditLog:
    return rt.audit


AuditorDep = Annotated[Auditor, Depends(require_auditor)]
LogDep = Annotated[ChainedAuditLog, Depends(get_log)]


def _query(
    who: AuditorDep,
    patient: str | None = None,
    service: str | None = None,
    model: str | None = None,
    model_version: Annotated[str | None, Query(alias="modelVersion")] = None,
    status: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: Literal[
        "hook", "feedback", "auditor-read", "app-access", "population-run", "checkpoint", "any"
    ] = "hook",
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT)] = 100,
) -> AuditQuery:
    chosen: RecordKind | None = None if kind == "any" else kind
    return AuditQuery(
        patient_id=patient,
        service_id=service,
        model_id=model,
        model_version=model_version,
        status=status,
        outcome=outcome,
        since=since,
        until=until,
        kind=chosen,
        after_seq=after,
        limit=limit,
        # A tenant's auditor reads that tenant's records alone, whatever the query says.
        tenant=who.tenant,
    )


QueryDep = Annotated[AuditQuery, Depends(_query)]


def record_read(
    log: ChainedAuditLog,
    who: Auditor,
    action: AuditorReadAction,
    query: dict[str, Any],
    seqs: Iterable[int] = (),
) -> None:
    """Every auditor read goes on the chain: who, what they asked, which records came back
    (the API's and the console's reads alike)."""
    returned = tuple(seqs)
    log.record_auditor_read(
        AuditorRead(
            auditor_iss=who.iss,
            auditor_sub=who.sub,
            token_jti=who.jti,
            action=action,
            query=query,
            returned=len(returned),
            seqs=returned,
        )
    )


def visible_record(log: ChainedAuditLog, seq: int, tenant: str | None) -> StoredAuditRecord | None:
    """The record, or None when there is none or it is another tenant's: to an auditor
    bound to a tenant, another tenant's record is no record."""
    rec = log.get(seq)
    return None if rec is None or tenant not in (None, record_tenant(rec)) else rec


@router.get("/records")
def query_records(who: AuditorDep, log: LogDep, q: QueryDep) -> dict[str, Any]:
    if q.limit > MAX_PAGE:
        raise PageTooLarge(f"limit is at most {MAX_PAGE} here; use /audit/export")
    records = log.query(q)
    record_read(log, who, "query", q.to_json(), (r.seq for r in records))
    return {
        "records": [r.to_json() for r in records],
        "next": records[-1].seq if len(records) == q.limit else None,
    }


@router.get("/records/{seq}")
def fetch_record(
    seq: Annotated[int, Path(ge=1, le=2**63 - 1)], who: AuditorDep, log: LogDep
) -> dict[str, Any]:
    rec = visible_record(log, seq, who.tenant)
    record_read(log, who, "record", {"seq": seq}, (rec.seq,) if rec else ())
    if rec is None:
        raise RecordNotFound(f"no audit record {seq}")
    feedback = (
        {card: log.feedback_for(card) for card in log.cards_of(seq)} if rec.kind == "hook" else {}
    )
    return {
        "record": rec.to_json(),
        "feedback": feedback,
        "check": rec.check(log.get(seq - 1) if seq > 1 else None),
    }


@router.get("/export")
def export(who: AuditorDep, log: LogDep, q: QueryDep) -> Response:
    records = log.query(q)
    record_read(log, who, "export", q.to_json(), (r.seq for r in records))
    body = b"".join(to_ndjson(export_resources(records)))
    return Response(body, media_type="application/fhir+ndjson")


@router.get("/verify")
def verify(who: AuditorDep, log: LogDep, settings: SettingsDep) -> dict[str, Any]:
    # The chain is one for every tenant: its report counts and names records of all of
    # them, so only an auditor not bound to a tenant may ask for it. The refusal is on
    # the chain too, like every auditor read.
    if who.tenant is not None:
        record_read(log, who, "verify", {"refused": "tenant-bound auditor"})
        raise OutsideAuditorTenant(
            f"the chain report covers every tenant; an auditor of tenant {who.tenant!r} "
            "reads its own records (/audit/records) and an auditor of no tenant verifies"
        )
    report = log.verify(verify_key_from(settings))
    record_read(log, who, "verify", {})
    return report.to_json()
