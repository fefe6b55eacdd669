"""The composition root: ``create_app`` builds the settings' stores, models and
runtime, and wires the routers, middleware and the error edge together.

The routes are in their packages (``cds_service.http.routes``, ``cds_service.audit``,
``smart_app``) and get what they need through ``Depends`` (``cds_service.http.deps``);
errors are answered in one place (``cds_service.http.failures``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cds_service.audit.api import router as audit_router
from cds_service.audit.auth import AuditorVerifier
from cds_service.audit.committer import AuditCommitter
from cds_service.audit.console import install_console
from cds_service.audit.follow_api import router as audit_follow_router
from cds_service.audit.replay import ModelArchive, archive_served
from cds_service.audit.sql import SqlAuditLog, open_audit_log
from cds_service.http.auth import (
    ClientVerifier,
    JwksCache,
    PostgresReplayCache,
    ReplayCache,
    SqlReplayCache,
)
from cds_service.http.deps import publish, publish_runtime
from cds_service.http.edge import ServerTiming
from cds_service.http.failures import install as install_edge
from cds_service.http.routes import probes
from cds_service.http.routes import router as hook_routes
from cds_service.ops.log_redaction import install_access_log_redaction
from cds_service.ops.logs import configure_logging
from cds_service.ops.metrics import MeasuredTransport
from cds_service.ops.observe import HookCallObserver, observe_audit_append
from cds_service.ops.readiness import Readiness
from cds_service.pipeline.run import Runtime
from cds_service.services.catalog import SERVICES
from cds_service.services.vancomycin import simulator_for
from cds_service.settings import Settings
from cds_service.stores import open_twin_store
from onnx_models.registry import ModelRegistry
from smart_app.routes import install as install_smart_app
from smart_app.sessions import SessionStore
from twin_engine.fhir.memo import set_parse_memo
from twin_engine.store import TwinStore

log = logging.getLogger("twin_cds")


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
    replay: SqlReplayCache = (
        PostgresReplayCache(settings.database_url)
        if settings.database_url
        else ReplayCache(settings.replay_db)
    )
    # The app's sessions too: PostgreSQL when configured, else SQLite shared by the
    # workers of this host.
    sessions = (
        SessionStore.postgres(settings.database_url)
        if settings.database_url
        else SessionStore.sqlite(settings.app_sessions_db)
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
            verifier = ClientVerifier(
                settings.clients,
                replay,
                JwksCache(http),
                leeway_s=settings.jwt_leeway_s,
                max_lifetime_s=settings.jwt_max_lifetime_s,
            )
            # Made here: its drain task belongs to the server's event loop.
            committer = AuditCommitter(audit) if settings.audit_group_commit else None
            runtime = Runtime(settings, registry, twins, audit, http, committer=committer)
            publish_runtime(app, runtime, verifier)
            # Everything loaded so far (FHIR models, pydantic schemas, ONNX sessions) lives
            # as long as the process. Freezing it keeps full collections from walking it:
            # bench/hook_latency.py saw ~100 ms gen-2 pauses in p99 before this.
            gc.freeze()
            # A young generation of 10,000 containers, not 700: a hook call's parsed body
            # (a generated patient's 51 KiB: ~730 dicts and lists) crossed 700 in the
            # middle of every json parse, and that collection walked it on cold memory,
            # ~0.2 ms a call. Such a body is freed by reference counting at the call's
            # end (no cycles); 80 calls then ran no collection at all.
            gc.set_threshold(10_000, 10, 10)
            yield
            # Every record handed over is committed before the stores close (SIGTERM
            # drains: the server has answered its in-flight calls by now).
            if committer is not None:
                await committer.close()
        # Release the stores' connections (PostgreSQL) when the app stops.
        audit.close()
        replay.close()
        twins.close()
        sessions.close()

    app = FastAPI(title="twin-cds", version="0.1.0", lifespan=lifespan, **_docs(settings))
    readiness = readiness_checks(settings, registry, twins, audit, sessions)

    def schema() -> dict[str, Any]:
        # Each store's database at this release's revision (else `twin-cds db upgrade`).
        return {
            "twins": twins.schema_check(),
            "audit": audit.schema_check(),
            "replay": replay.schema_check(),
            "sessions": sessions.schema_check(),
        }

    readiness.add("schema", schema)
    publish(
        app,
        settings=settings,
        registry=registry,
        offered=offered,
        replay=replay,
        auditor_verifier=AuditorVerifier(
            settings.auditors,
            audience=settings.audit_audience,
            # An issuer that is also a CDS client is not an auditor's.
            cds_client_issuers=frozenset(c.iss for c in settings.clients),
            replay=replay,
            leeway_s=settings.jwt_leeway_s,
            max_lifetime_s=settings.auditor_token_max_lifetime_s,
        ),
        readiness=readiness,
    )
    app.include_router(hook_routes)
    app.include_router(probes)
    app.add_middleware(ServerTiming)
    install_smart_app(app, settings, sessions)
    app.include_router(audit_router)
    app.include_router(audit_follow_router)
    install_console(app)
    app.add_middleware(HookCallObserver, services=frozenset(offered))
    # Browser-based CDS clients call from their own origin and send Authorization, so
    # the preflight must allow that header.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    # Last, so it wraps everything: request limits before CORS, auth or parsing; the
    # errors' answers (store outages 503, our own faults 500, each logged once).
    install_edge(app)
    return app


def _docs(settings: Settings) -> dict[str, Any]:
    """/docs and /openapi.json only when the operator asks for them (TWIN_CDS_API_DOCS)."""
    if settings.api_docs:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}


def readiness_checks(
    settings: Settings,
    registry: ModelRegistry,
    twins: TwinStore,
    audit: SqlAuditLog,
    sessions: SessionStore,
) -> Readiness:
    """Stores reachable (one read each), models loaded with their shas."""
    checks = Readiness()

    def twin_store() -> None:
        twins.versions("readyz|probe")

    def audit_trail() -> None:
        audit.get(0)

    def app_sessions() -> None:
        sessions.get("readyz-probe", "active")

    checks.add("twin_store", twin_store)
    checks.add("audit_trail", audit_trail)
    checks.add("app_sessions", app_sessions)

    def models() -> dict[str, Any]:
        shas = {mid: registry.get(mid).sha256 for mid in registry.ids()}
        pk = simulator_for(settings.vancomycin_model)
        return shas | {settings.vancomycin_model: pk.sha256}

    checks.add("models", models)
    return checks
