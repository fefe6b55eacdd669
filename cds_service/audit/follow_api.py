"""The auditor API's follow-through reads: replay, statistics and forecast self-check.

    GET /audit/records/{seq}/replay   rebuild the call; byte-identical or the first difference
    GET /audit/stats                  acceptance / override (by reason) / no-response rates
                                      by service, model version, card kind, tenant and month
    GET /audit/selfcheck              forecasts against what was measured later, per model

Same rules as ``audit_api``: auditors only, bound to their issuer's tenant, and every
read is an ``auditor-read`` record on the chain before the answer is sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path

from cds_service.audit.api import AuditorDep, LogDep, record_read, visible_record
from cds_service.errors import RecordNotFound
from cds_service.http.deps import RuntimeDep, SettingsDep

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("/records/{seq}/replay")
def replay(
    seq: Annotated[int, Path(ge=1, le=2**63 - 1)], who: AuditorDep, log: LogDep, rt: RuntimeDep
) -> dict[str, Any]:
    from cds_service.audit.replay import ModelArchive, installed_shas, replay_record

    rec = visible_record(log, seq, who.tenant)
    record_read(log, who, "replay", {"seq": seq}, (rec.seq,) if rec else ())
    if rec is None:
        raise RecordNotFound(f"no audit record {seq}")
    report = replay_record(
        rec,
        twins=rt.twins,
        archive=ModelArchive(rt.settings.model_archive_dir),
        installed=installed_shas(rt.registry),
    )
    return report.to_json()


@router.get("/stats")
def stats(who: AuditorDep, log: LogDep, since: datetime | None = None) -> dict[str, Any]:
    from cds_service.audit.stats import follow_through

    result = follow_through(log, since=since, tenant=who.tenant)
    record_read(
        log, who, "stats", {"since": since.isoformat() if since else None, "tenant": who.tenant}
    )
    return result.to_json()


@router.get("/selfcheck")
def selfcheck(who: AuditorDep, log: LogDep, settings: SettingsDep) -> dict[str, Any]:
    from cds_service.audit.replay import ModelArchive
    from cds_service.audit.selfcheck import self_check_of_log

    report = self_check_of_log(
        log, ModelArchive(settings.model_archive_dir), settings, tenant=who.tenant
    )
    record_read(log, who, "selfcheck", {"tenant": who.tenant})
    return report
