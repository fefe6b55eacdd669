"""One function for every hook call, reading like the flow:
gather data → build twin → run the service's models (predict + explain, or fit a PK
twin and search regimens) → render cards → audit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, TypedDict

import httpx

from cds_service.audit.basis import dosing_basis, risk_basis
from cds_service.audit.committer import AuditCommitter
from cds_service.audit.log import (
    AuditEntry,
    AuditLog,
    AuditStatus,
    ModelUse,
    explanation_for_audit,
)
from cds_service.errors import DataUnavailable, TooMuchData, mark_recorded
from cds_service.http.auth import VerifiedClient
from cds_service.http.cards import CdsResponse, Link
from cds_service.http.hooks import HookRequest
from cds_service.ops.metrics import MODEL_RUN_DURATION, TWIN_VERSIONS_WRITTEN, timed
from cds_service.ops.observe import lap
from cds_service.pipeline.gather import GatheredData, gather
from cds_service.pipeline.outcome import Outcome, dosing_outputs, outputs_for_audit, risk_outcome
from cds_service.pipeline.render import app_link
from cds_service.services.catalog import ServiceDefinition
from cds_service.services.vancomycin import (
    dose_simulator_context,
    dosing_cards,
    simulator_for,
)
from cds_service.settings import Settings
from onnx_models.registry import ModelRegistry
from twin_engine import FeatureSet, Twin, build_twin_from_fhir, derive_features
from twin_engine.errors import IngestError
from twin_engine.store import TwinStore, store_key


def _today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True, slots=True)
class Runtime:
    """What every hook call needs, built once at start."""

    settings: Settings
    registry: ModelRegistry
    twins: TwinStore
    audit: AuditLog
    http: httpx.AsyncClient
    today: Callable[[], date] = _today
    #: Group commit of the hook records (``audit_group_commit``); None: one commit per
    #: call, on the event loop.
    committer: AuditCommitter | None = None

    async def record(self, entry: AuditEntry) -> None:
        """Append a hook call's record; return once it is durable."""
        if self.committer is None:
            self.audit.record(entry)
        else:
            await self.committer.record(entry)


def _run_models(
    service: ServiceDefinition,
    rt: Runtime,
    patient_id: str,
    twin_version: int,
    features: FeatureSet,
    twin: Twin,
    request: HookRequest,
    data: GatheredData,
    as_of: datetime,
) -> Outcome:
    link = app_link(service, rt.settings.app_launch_url, patient_id, twin_version)
    if service.kind == "vancomycin":
        simulator_link = Link(
            label="Open the dose simulator",
            url=rt.settings.app_launch_url,
            type="smart",
            appContext=dose_simulator_context(patient_id, twin_version),
        )
        with timed(MODEL_RUN_DURATION, rt.settings.vancomycin_model):
            dosing = dosing_cards(
                list(data.resources),
                request.context.model_dump(),
                as_of=as_of,
                model_id=rt.settings.vancomycin_model,
                link=simulator_link,
            )
        return Outcome(dosing.cards, (), dosing=dosing)
    return risk_outcome(service, rt.registry, twin, features, rt.settings.kfre_model, link)


def _pk_model_use(model_id: str) -> ModelUse:
    simulator = simulator_for(model_id)
    return ModelUse(model_id, simulator.card.version, simulator.sha256)


class _Answered(TypedDict):
    """The fields of an answered call's record that every service fills (typed, so that
    ``replace(entry, **answered)`` is checked against ``AuditEntry`` like named fields)."""

    status: AuditStatus
    duration_ms: float
    twin_version: int
    twin_hash: str
    twin_key: str | None
    cards: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class _Call:
    """One hook call being answered: what is audited whatever happens, and since when."""

    request: HookRequest
    service: ServiceDefinition
    rt: Runtime
    entry: AuditEntry
    started: float

    async def fail(self, status: AuditStatus, error: str, data: GatheredData | None) -> None:
        """Record the failed call; the exception being handled is marked as recorded, so
        the HTTP edge can say so (when this write fails, it raises instead)."""
        await self.rt.record(
            replace(
                self.entry,
                status=status,
                duration_ms=1000 * (time.perf_counter() - self.started),
                data_problems=data.problems if data else (),
                error=error,
            )
        )
        handled = sys.exception()
        if handled is not None:
            mark_recorded(handled)


async def run_service(
    request: HookRequest,
    service: ServiceDefinition,
    rt: Runtime,
    client: VerifiedClient | None = None,
) -> CdsResponse:
    """gather → twin → models (risk with explanations, or PK dosing) → cards → audit."""
    call = _Call(
        request,
        service,
        rt,
        AuditEntry(
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
        ),
        time.perf_counter(),
    )
    try:
        # A verified client may only send us to its own FHIR servers; the global
        # list serves only when authentication is off (local development).
        allowlist = client.config.fhir_servers if client else rt.settings.fhir_server_allowlist
        data = await gather(request, service, rt.settings, rt.http, allowlist)
        lap("gather")
    except TooMuchData as exc:
        # The caller's doing (a prefetch over the cap): on the record as a bad request.
        await call.fail("bad-request", str(exc), None)
        raise
    except DataUnavailable as exc:
        await call.fail("data-unavailable", str(exc), None)
        raise
    except Exception as exc:
        # A fault of ours: the call is still on the record (the type only; a message
        # could carry patient data), then the HTTP edge answers it.
        await call.fail("error", type(exc).__name__, None)
        raise
    # Parsing, models and store writes run here, on the event loop, on purpose: moved
    # to threads they only fought over the GIL (5 ms switch interval) and SQLite's
    # write lock. bench/load.py measured it: an unbounded pool took p99 from 0.12 s to
    # 2.3 s; one worker thread halved throughput (580 → 260 req/s). The work is a few
    # ms a call; scale is by processes (uvicorn --workers). Only the audit record's
    # commit leaves the loop (``audit.committer``, when on): awaited, so the call is
    # answered once its record is durable.
    return await _answer(call, data)


async def _answer(call: _Call, data: GatheredData) -> CdsResponse:
    rt, request, service = call.rt, call.request, call.service
    try:
        twin = build_twin_from_fhir(list(data.resources), patient_id=request.context.patientId)
        lap("twin")
    except IngestError as exc:
        await call.fail("data-unavailable", str(exc), data)
        raise DataUnavailable(str(exc)) from exc
    try:
        # Patient ids are unique only within one EHR: with authenticated clients the
        # twin is keyed by tenant (or issuer) too, so two EHRs' patient "123" never mix.
        twin_key = store_key(call.entry.client_tenant or call.entry.client_iss, twin.patient_id)
        version = rt.twins.save(twin, key=twin_key)
        lap("store")
        TWIN_VERSIONS_WRITTEN.inc(version.created)
        # One "now" and one "today" per call, both on the record, so replay derives the
        # same features and fits the same PK history as the call did.
        as_of, today = datetime.now(UTC), rt.today()
        features = derive_features(twin, today)
        outcome = _run_models(
            service, rt, twin.patient_id, version.version, features, twin, request, data, as_of
        )
        lap("models")
    except Exception as exc:
        await call.fail("error", type(exc).__name__, data)
        raise
    cards = list(outcome.cards)
    response = CdsResponse(cards=cards)
    # What either record holds beyond the call's entry; the entry is copied once, with
    # these and the service's own fields together.
    answered = _Answered(
        status="ok" if cards else "no-card",
        duration_ms=1000 * (time.perf_counter() - call.started),
        twin_version=version.version,
        twin_hash=version.content_hash,
        twin_key=twin_key,
        cards=tuple(c.model_dump(mode="json", exclude_none=True) for c in cards),
    )
    if outcome.dosing is not None:
        await rt.record(
            replace(
                call.entry,
                **answered,
                model=_pk_model_use(rt.settings.vancomycin_model),
                # Like a risk record: the inputs the numbers rest on (the twin version is
                # already on the record).
                inputs=tuple(outcome.dosing.result.inputs_json())
                if outcome.dosing.result is not None
                else (),
                outputs=dosing_outputs(outcome.dosing),
                data_problems=data.problems
                + ((outcome.dosing.problem,) if outcome.dosing.problem else ()),
                replay_basis=dosing_basis(
                    outcome.dosing.draft.resource if outcome.dosing.draft else None,
                    outcome.dosing.history,
                    outcome.dosing.problem,
                    as_of=as_of,
                    model_id=rt.settings.vancomycin_model,
                    launch_url=rt.settings.app_launch_url,
                ),
            )
        )
        return response
    primary = outcome.assessments[0]
    await rt.record(
        replace(
            call.entry,
            **answered,
            model=ModelUse(primary.model.card.id, primary.model.card.version, primary.model.sha256),
            other_models=tuple(
                ModelUse(a.model.card.id, a.model.card.version, a.model.sha256)
                for a in outcome.assessments[1:]
            ),
            inputs=tuple(primary.inputs_json()),
            outputs=outputs_for_audit(outcome.assessments),
            explanation=explanation_for_audit(primary.factors),
            missing=tuple(n.name for n in primary.not_used),
            data_problems=data.problems + tuple(p for a in outcome.assessments for p in a.problems),
            replay_basis=risk_basis(
                today, launch_url=rt.settings.app_launch_url, kfre_model=rt.settings.kfre_model
            ),
        )
    )
    return response
