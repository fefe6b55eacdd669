"""One function per hook, reading like the flow:
gather data → build twin → predict → explain → render cards → audit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import httpx

from cds_service.assess import Assessment, assess
from cds_service.audit import AuditEntry, AuditStatus, ModelUse, SqliteAuditLog
from cds_service.auth import VerifiedClient
from cds_service.cards import CdsResponse
from cds_service.errors import BadHookRequest, DataUnavailable
from cds_service.hooks import HookRequest
from cds_service.prefetch import GatheredData, gather
from cds_service.render import render_cards
from cds_service.services import ServiceDefinition
from cds_service.settings import Settings
from onnx_models.registry import ModelRegistry
from twin_engine import build_twin_from_fhir, derive_features
from twin_engine.errors import IngestError
from twin_engine.store import SqliteTwinStore


def _today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every hook call needs, built once at start."""

    settings: Settings
    registry: ModelRegistry
    twins: SqliteTwinStore
    audit: SqliteAuditLog
    http: httpx.AsyncClient
    today: Callable[[], date] = _today


def _inputs_for_audit(a: Assessment) -> tuple[dict[str, object], ...]:
    return tuple(
        {
            "name": i.name,
            "value": i.value,
            "unit": i.unit,
            "time": i.time.isoformat() if i.time else None,
            "sources": list(i.sources),
            "quality": i.quality,
        }
        for i in a.inputs
    )


async def run_risk_service(
    request: HookRequest,
    service: ServiceDefinition,
    rt: Runtime,
    client: VerifiedClient | None = None,
) -> CdsResponse:
    """gather → twin → predict+explain → cards → audit, for one hook call."""
    started = time.perf_counter()
    call = AuditEntry(
        hook_instance=request.hookInstance,
        hook=request.hook,
        service_id=service.id,
        patient_id=request.context.patientId,
        status="error",
        duration_ms=0.0,
        client_iss=client.iss if client else None,
        client_tenant=client.tenant if client else None,
        client_jti=client.jti if client else None,
        user_id=request.context.userId,
        encounter_id=request.context.encounterId,
    )

    def audit_failure(status: AuditStatus, error: str, data: GatheredData | None) -> None:
        rt.audit.record(
            replace(
                call,
                status=status,
                duration_ms=1000 * (time.perf_counter() - started),
                data_problems=data.problems if data else (),
                error=error,
            )
        )

    data: GatheredData | None = None
    try:
        # A verified client may only send us to its own FHIR servers; the global
        # list serves only when authentication is off (local development).
        allowlist = client.config.fhir_servers if client else rt.settings.fhir_server_allowlist
        data = await gather(request, service, rt.settings, rt.http, allowlist)
        twin = build_twin_from_fhir(list(data.resources), patient_id=request.context.patientId)
    except IngestError as exc:
        audit_failure("data-unavailable", str(exc), data)
        raise DataUnavailable(str(exc)) from exc
    except DataUnavailable as exc:
        audit_failure("data-unavailable", str(exc), data)
        raise
    except BadHookRequest as exc:
        audit_failure("bad-request", str(exc), data)
        raise

    version = rt.twins.save(twin)
    features = derive_features(twin, rt.today())
    model = rt.registry.get(service.model_id)
    assessment = assess(
        model,
        features,
        excluded_by=service.excluded_by,
        deceased=twin.demographics.deceased,
    )
    cards = render_cards(
        service,
        assessment,
        patient_id=twin.patient_id,
        twin_version=version.version,
        launch_url=rt.settings.app_launch_url,
    )
    response = CdsResponse(cards=cards)
    rt.audit.record(
        replace(
            call,
            status="ok" if cards else "no-card",
            duration_ms=1000 * (time.perf_counter() - started),
            twin_version=version.version,
            twin_hash=version.content_hash,
            model=ModelUse(model.card.id, model.card.version, model.sha256),
            inputs=_inputs_for_audit(assessment),
            outputs=assessment.outputs or None,
            missing=tuple(n.name for n in assessment.not_used),
            data_problems=data.problems + assessment.problems,
            cards=tuple(c.model_dump(mode="json", exclude_none=True) for c in cards),
        )
    )
    return response
