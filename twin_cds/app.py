"""The FastAPI application: discovery, the hook endpoints, and the app's routes.

Exception handlers sit here, at the HTTP edge, and turn the service's errors into
status codes with an OperationOutcome body. Nothing a caller sends can become a 500
on purpose; a store outage is a 503 and an unexpected fault a 500, each saying whether
the call was recorded (``failures``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from cds_service.audit.api import router as audit_router
from cds_service.audit.console import install_console
from cds_service.audit.follow_api import router as audit_follow_router
from cds_service.audit.log import AuditEntry, AuditLog, open_audit_log
from cds_service.audit.replay import ModelArchive, archive_served
from cds_service.errors import BadHookRequest, ServiceError, UnknownService
from cds_service.http.auth import (
    ClientVerifier,
    JtiCache,
    JwksCache,
    PostgresReplayCache,
    ReplayCache,
    Unauthorized,
    VerifiedClient,
)
from cds_service.http.edge import (
    MAX_FEEDBACK_BODY_BYTES,
    MAX_HOOK_BODY_BYTES,
    BodyTooLarge,
    RequestLimits,
    read_body,
    request_validation_error,
    require_json,
    validation_problems,
)
from cds_service.http.failures import install as install_failure_answers
from cds_service.http.hooks import FeedbackRequest, HookRequest, missing_context
from cds_service.ops.log_redaction import install_access_log_redaction
from cds_service.ops.logs import configure_logging
from cds_service.ops.metrics import MeasuredTransport, exposition
from cds_service.ops.observe import HookCallObserver, observe_audit_append
from cds_service.ops.readiness import Readiness, report
from cds_service.pipeline.run import Runtime, run_service
from cds_service.services.catalog import SERVICES
from cds_service.services.vancomycin import simulator_for
from cds_service.settings import Settings
from cds_service.stores import open_twin_store
from onnx_models.registry import ModelRegistry
from smart_app.routes import install as install_smart_app
from twin_engine.ingest import set_parse_memo
from twin_engine.store import TwinStore

log = logging.getLogger("twin_cds")

MAX_BODY_BYTES = MAX_HOOK_BODY_BYTES


def operation_outcome(status: int, message: str) -> JSONResponse:
    code = {400: "invalid", 404: "not-found", 412: "not-found", 413: "too-costly"}.get(
        status, "exception"
    )
    return JSONResponse(
        status_code=status,
        content={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}],
        },
    )


def create_app(settings: Settings | None = None, registry: ModelRegistry | None = None) -> FastAPI:
    """Build the app. Models load once here, so a broken model fails the start, not a call."""
    settings = settings or Settings()
    install_access_log_redaction()
    configure_logging(settings.log_format)
    set_parse_memo(settings.parse_memo)
    registry = registry or ModelRegistry.load(settings.model_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    twins = open_twin_store(settings)
    audit = open_audit_log(settings)
    audit.on_append = observe_audit_append
    # The jti replay cache lives where the other replicas can see it: PostgreSQL when
    # configured, else a SQLite file shared by the workers of this host.
    replay: JtiCache = (
        PostgresReplayCache(settings.database_url)
        if settings.database_url
        else ReplayCache(settings.data_dir / "replay.sqlite")
    )
    # The PK model the settings name is loaded now: a missing file fails the start.
    simulator_for(settings.vancomycin_model)
    # Every model file served is kept by its sha256, so old records stay replayable
    # after the models are upgraded (twin-cds audit replay).
    archive_served(ModelArchive(settings.model_archive_dir), registry, [settings.vancomycin_model])
    loaded = set(registry.ids())
    offered = {sid: s for sid, s in SERVICES.items() if set(s.required_models) <= loaded}
    for sid in SERVICES.keys() - offered.keys():
        missing = sorted(set(SERVICES[sid].required_models) - loaded)
        log.warning("service %s not offered: models %s not loaded", sid, ", ".join(missing))
    if not settings.auth_required:
        log.warning(
            "AUTHENTICATION IS OFF: any caller can use this service. "
            "TWIN_CDS_AUTH_REQUIRED=false is for local development only."
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.fhir_timeout_s)
        # Every outgoing request is timed and counted by server (twin_cds_fhir_request_*).
        transport = MeasuredTransport(httpx.AsyncHTTPTransport())
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, transport=transport
        ) as http:
            app.state.runtime = Runtime(settings, registry, twins, audit, http)
            app.state.verifier = ClientVerifier(
                settings.clients,
                replay,
                JwksCache(http),
                leeway_s=settings.jwt_leeway_s,
                max_lifetime_s=settings.jwt_max_lifetime_s,
            )
            # Everything loaded so far (FHIR models, pydantic schemas, ONNX sessions) lives
            # as long as the process. Freezing it keeps full collections from walking it:
            # bench/hook_latency.py saw ~100 ms gen-2 pauses in p99 before this.
            gc.freeze()
            yield
        # Release the stores' connections (PostgreSQL) when the app stops.
        audit.close()
        replay.close()
        twins.close()
        app.state.app_sessions.close()

    app = FastAPI(title="twin-cds", version="0.1.0", lifespan=lifespan, **_docs(settings))
    app.state.settings = settings
    app.state.replay = replay

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return operation_outcome(exc.status_code, str(exc))

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> Response:
        # The reason is for the operator; the caller learns nothing from a bare 401.
        log.warning("401 on %s: %s", request.url.path, exc)
        return Response(status_code=401)

    async def authenticate(request: Request) -> VerifiedClient | None:
        if not settings.auth_required:
            return None
        # aud must be the exact URL called, as the EHR knows us (public_base_url).
        audience = settings.public_base_url.rstrip("/") + request.url.path
        verifier: ClientVerifier = request.app.state.verifier
        # Every Authorization value as received: two of them are refused.
        return await verifier.verify(request.headers.getlist("authorization"), audience)

    @app.get("/cds-services")
    async def discovery(request: Request) -> dict[str, Any]:
        await authenticate(request)
        return {"services": [s.discovery() for s in offered.values()]}

    @app.middleware("http")
    async def server_timing(request: Request, call_next: Any) -> Response:
        # Server-Timing lets an EHR team (and bench/) see our share of the latency, for
        # errors as well as cards.
        started = time.perf_counter()
        response: Response = await call_next(request)
        elapsed_ms = 1000 * (time.perf_counter() - started)
        response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.3f}"
        return response

    @app.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> Response:
        client = await authenticate(request)
        service = offered.get(service_id)
        too_large = f"request body over {MAX_BODY_BYTES} bytes"
        if service is None:
            # A call we refuse is on the record like a malformed one (ids, the reason).
            message = f"no CDS service {service_id[:200]!r}"
            audit.record(_refused(service_id[:200], b"", client, message))
            raise UnknownService(message)
        try:
            # Refused before the body is read into memory, or as soon as it is too long.
            raw = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge:
            audit.record(_refused(service.id, b"", client, too_large))
            return operation_outcome(413, too_large)
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
            audit.record(_refused(service.id, raw, client, str(exc)))
            raise
        runtime: Runtime = request.app.state.runtime
        response = await run_service(hook_request, service, runtime, client)
        return Response(orjson.dumps(response.to_json()), media_type="application/json")

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> Response:
        client = await authenticate(request)
        if service_id not in offered:
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
        result = audit.record_feedback(
            service_id,
            [e.model_dump(mode="json", exclude_none=True) for e in body.feedback],
            client.iss if client else None,
        )
        if result.unknown_cards:
            # Nothing is lost silently: the caller learns which cards we never sent.
            raise BadHookRequest(
                "feedback names cards this service did not send: "
                + ", ".join(result.unknown_cards[:5])
            )
        return Response(status_code=200)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": registry.ids()}

    readiness = readiness_checks(settings, registry, twins, audit, app)
    app.state.readiness = readiness  # a schema-version check is added here once there is one

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready, results = await readiness.run()
        return JSONResponse(report(ready, results), status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    install_smart_app(app, settings)
    app.include_router(audit_router)
    app.include_router(audit_follow_router)
    install_console(app)
    # Browser-based CDS clients call from their own origin and send Authorization, so
    # the preflight must allow that header.
    app.add_middleware(HookCallObserver, services=frozenset(offered))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    # Limits before CORS, auth or parsing; only the failure answers wrap them.
    install_edge(app)
    # Last, so it wraps everything: store outages 503, our own faults 500, logged once.
    install_failure_answers(app)
    return app


def install_edge(app: FastAPI) -> None:
    """Request limits outermost (before CORS, auth or parsing), and a validation answer
    that never fails on its own echo (``cds_service.http.edge``)."""
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_middleware(RequestLimits)


def _docs(settings: Settings) -> dict[str, Any]:
    """/docs and /openapi.json only when the operator asks for them (TWIN_CDS_API_DOCS)."""
    if settings.api_docs:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def readiness_checks(
    settings: Settings,
    registry: ModelRegistry,
    twins: TwinStore,
    audit: AuditLog,
    app: FastAPI,
) -> Readiness:
    """Stores reachable (one read each), models loaded with their shas."""
    checks = Readiness()

    def twin_store() -> None:
        twins.versions("readyz|probe")

    def audit_trail() -> None:
        audit.get(0)

    def app_sessions() -> None:
        app.state.app_sessions.get("readyz-probe", "active")

    checks.add("twin_store", twin_store)
    checks.add("audit_trail", audit_trail)
    checks.add("app_sessions", app_sessions)

    def models() -> dict[str, Any]:
        shas = {mid: registry.get(mid).sha256 for mid in registry.ids()}
        pk = simulator_for(settings.vancomycin_model)
        return shas | {settings.vancomycin_model: pk.sha256}

    checks.add("models", models)
    return checks


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
