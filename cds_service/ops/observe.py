"""One observation per hook call: its metrics and its ``hook.call`` log event.

A hook call's facts come from three places and meet here:
  - ``HookCallObserver`` (ASGI middleware) times the HTTP exchange of every
    ``POST /cds-services/{id}`` and knows its status code, also for calls refused
    before any of our code ran (401) and for faults (500);
  - the pipeline marks the end of each stage with ``lap("gather")``, ``lap("twin")``...;
  - the audit trail tells ``observe_audit_append`` what it recorded: the call's
    outcome, hook instance and tenant, exactly as the auditor will read them.
They meet through a ``CallTrace`` held in a context variable for the call's duration.

The log event holds the hook instance, service, tenant, outcome, status code and
the durations by stage: never a patient or user id, a body or a token.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from cds_service.ops.metrics import (
    APP_LAUNCHES,
    AUDIT_APPEND_DURATION,
    AUDIT_CHAIN_LENGTH,
    AUDITOR_READS,
    HOOK_DURATION,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PREFIX: Final = "/cds-services/"
#: Audit status → the outcome label of the metrics (the issue's closed set).
_OUTCOME: Final = {
    "ok": "ok",
    "no-card": "no-card",
    "data-unavailable": "412",
    "bad-request": "4xx",
    "error": "error",
}

log = structlog.get_logger("twin_cds.hooks")


@dataclass(slots=True)
class CallTrace:
    """What one hook call did, filled in as it goes (mutable: it is the call's notebook)."""

    service: str
    started: float
    last: float
    stages_ms: dict[str, float] = field(default_factory=dict)
    outcome: str | None = None
    hook_instance: str | None = None
    tenant: str | None = None


_current: contextvars.ContextVar[CallTrace | None] = contextvars.ContextVar(
    "twin_cds_call_trace", default=None
)


def lap(stage: str) -> None:
    """Mark the end of a pipeline stage of the current call (no-op outside a call)."""
    trace = _current.get()
    if trace is None:
        return
    now = time.perf_counter()
    trace.stages_ms[stage] = round(1000 * (now - trace.last), 3)
    trace.last = now


def observe_audit_append(kind: str, body: dict[str, Any], seq: int, seconds: float) -> None:
    """Called by the audit trail after each append committed (see ``ChainedAuditLog``)."""
    AUDIT_APPEND_DURATION.labels(kind).observe(seconds)
    AUDIT_CHAIN_LENGTH.set(seq)
    if kind == "app-access":
        APP_LAUNCHES.labels(str(body.get("launch"))).inc()
    elif kind == "auditor-read":
        AUDITOR_READS.labels(str(body.get("action"))).inc()
    elif kind == "hook":
        trace = _current.get()
        if trace is None:
            return
        lap("audit")
        trace.outcome = _OUTCOME.get(str(body.get("status")), "error")
        hook_instance = body.get("hookInstance")
        trace.hook_instance = hook_instance if isinstance(hook_instance, str) else None
        client = body.get("client")
        trace.tenant = client.get("tenant") if isinstance(client, dict) else None


def _outcome_of(status: int) -> str:
    if status == 412:
        return "412"
    if 400 <= status < 500:
        return "4xx"
    return "ok" if status < 400 else "error"


class HookCallObserver:
    """ASGI middleware: times every hook call and emits its metric and log event."""

    def __init__(self, app: ASGIApp, services: frozenset[str]) -> None:
        self.app = app
        # Only known ids become label values: a caller must not grow the label set.
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope.get("type") != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        service = path.removeprefix(_PREFIX) if path.startswith(_PREFIX) else None
        if service is None or "/" in service:
            await self.app(scope, receive, send)  # discovery, feedback, anything else
            return
        now = time.perf_counter()
        trace = CallTrace(service if service in self.services else "unknown", now, now)
        token = _current.set(trace)
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            _current.reset(token)
            _emit(trace, status)


def _emit(trace: CallTrace, status: int) -> None:
    # An audited call's outcome is the audit record's; a 401 (never audited) or a fault
    # that escaped before the audit write is classed by its status code.
    outcome = trace.outcome or _outcome_of(status)
    if trace.outcome == "ok" and status >= 500:
        outcome = "error"  # recorded, then the response itself failed
    seconds = time.perf_counter() - trace.started
    HOOK_DURATION.labels(trace.service, outcome).observe(seconds)
    log.info(
        "hook.call",
        hook_instance=trace.hook_instance,
        service=trace.service,
        tenant=trace.tenant,
        outcome=outcome,
        status=status,
        duration_ms=round(1000 * seconds, 3),
        stages_ms=trace.stages_ms,
    )
