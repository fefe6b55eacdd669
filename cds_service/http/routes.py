"""The CDS Hooks routes and the operator's probes, as thin functions over ``Depends``.

    GET  /cds-services                   discovery: the services whose models loaded
    POST /cds-services/{id}              a hook call: checked, then ``pipeline.run``
    POST /cds-services/{id}/feedback     card outcomes, onto the audit trail
    GET  /healthz  /readyz  /metrics     liveness, readiness (stores, models), Prometheus

Errors are raised (``cds_service.errors``) and answered by the edge
(``http.failures``). A call refused before the pipeline (an unknown service, a body
too large or malformed) is on the audit trail with its ids and reason, never its body.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask

from cds_service.audit.log import AuditEntry
from cds_service.errors import BadHookRequest, BodyTooLarge, UnknownService
from cds_service.http.auth import VerifiedClient
from cds_service.http.deps import ClientDep, HookCallDep, OfferedDep, ReadinessDep, RegistryDep
from cds_service.http.edge import (
    MAX_FEEDBACK_BODY_BYTES,
    MAX_HOOK_BODY_BYTES,
    read_body,
    require_json,
    validation_problems,
)
from cds_service.http.hooks import (
    Discovery,
    FeedbackRequest,
    HookRequest,
    ServiceDescription,
    missing_context,
)
from cds_service.ops.metrics import exposition
from cds_service.ops.readiness import report
from cds_service.pipeline.run import run_service

router = APIRouter()
probes = APIRouter(include_in_schema=False)


# usageRequirements is left out, not null, for a service without any.
@router.get("/cds-services", response_model_exclude_none=True)
async def discovery(_: ClientDep, offered: OfferedDep) -> Discovery:
    return Discovery(
        services=[ServiceDescription.model_validate(s.discovery()) for s in offered.values()]
    )


@router.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request, call: HookCallDep) -> Response:
    client, rt = call.client, call.rt
    service = call.offered.get(service_id)
    if service is None:
        # A call we refuse is on the record like a malformed one (ids, the reason).
        message = f"no CDS service {service_id[:200]!r}"
        rt.audit.record(_refused(service_id[:200], b"", client, message))
        raise UnknownService(message)
    try:
        # Refused before the body is read into memory, or as soon as it is too long.
        raw = await read_body(request, MAX_HOOK_BODY_BYTES)
    except BodyTooLarge as exc:
        rt.audit.record(_refused(service.id, b"", client, str(exc)))
        raise
    try:
        require_json(request)
        hook_request = _parse_hook_request(raw)
        if hook_request.hook != service.hook:
            raise BadHookRequest(
                f"service {service.id} answers {service.hook}, not {hook_request.hook}"
            )
        missing = missing_context(hook_request)
        if missing:
            raise BadHookRequest(f"{hook_request.hook} context needs {', '.join(missing)}")
    except BadHookRequest as exc:
        # An authenticated caller's malformed call is on the record too (what was
        # wrong, not the body); unauthenticated noise never reaches the chain.
        rt.audit.record(_refused(service.id, raw, client, str(exc)))
        raise
    response = await run_service(hook_request, service, rt, client)
    # The parsed body is freed once the answer is out, not before it: a generated
    # patient's (51 KiB: some 700 dicts and lists, thousands of strings) took ~0.4 ms
    # to free on the memory run_service had just churned, all of it between the cards
    # and the response's start.
    return Response(
        orjson.dumps(response.to_json()),
        media_type="application/json",
        background=BackgroundTask(_free_after_answer, hook_request),
    )


@router.post("/cds-services/{service_id}/feedback")
async def feedback(service_id: str, request: Request, call: HookCallDep) -> Response:
    if service_id not in call.offered:
        raise UnknownService(f"no CDS service {service_id[:200]!r}")
    require_json(request)
    raw = await read_body(request, MAX_FEEDBACK_BODY_BYTES)
    try:
        body = FeedbackRequest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise BadHookRequest(f"feedback body is not JSON: {exc}") from exc
    except ValidationError as exc:
        problems = validation_problems(exc.errors())
        raise BadHookRequest(f"not a valid feedback request: {problems}") from exc
    result = call.rt.audit.record_feedback(
        service_id,
        [e.model_dump(mode="json", exclude_none=True) for e in body.feedback],
        call.client.iss if call.client else None,
    )
    if result.unknown_cards:
        # Nothing is lost silently: the caller learns which cards we never sent.
        raise BadHookRequest(
            "feedback names cards this service did not send: " + ", ".join(result.unknown_cards[:5])
        )
    return Response(status_code=200)


@probes.get("/healthz")
async def healthz(registry: RegistryDep) -> dict[str, Any]:
    return {"status": "ok", "models": registry.ids()}


@probes.get("/readyz")
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    ready, results = await readiness.run()
    return JSONResponse(report(ready, results), status_code=200 if ready else 503)


@probes.get("/metrics")
async def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)


def _refused(service_id: str, raw: bytes, client: VerifiedClient | None, error: str) -> AuditEntry:
    """The audit entry of a call refused before the pipeline: only ids, never the body."""
    try:
        parsed: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    found = body.get("context")
    context: dict[str, Any] = found if isinstance(found, dict) else {}

    def text(value: object) -> str | None:
        return value[:200] if isinstance(value, str) else None

    return AuditEntry(
        hook_instance=text(body.get("hookInstance")) or "",
        hook=text(body.get("hook")) or "",
        service_id=service_id,
        patient_id=text(context.get("patientId")),
        status="bad-request",
        duration_ms=0.0,
        error=error[:500],
        client_iss=client.iss if client else None,
        client_tenant=client.tenant if client else None,
        client_jti=client.jti if client else None,
        user_id=text(context.get("userId")),
        encounter_id=text(context.get("encounterId")),
    )


async def _free_after_answer(_: HookRequest) -> None:
    """Nothing to do: holding the request until the response has been sent is the point.
    (``async``: starlette runs a plain function in its thread pool.)"""


def _parse_hook_request(raw: bytes) -> HookRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadHookRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadHookRequest("request body must be a JSON object")
    try:
        return HookRequest.model_validate(body)
    except ValidationError as exc:
        problems = validation_problems(exc.errors())
        raise BadHookRequest(f"not a valid CDS Hooks request: {problems}") from exc
