"""The HTTP edge's one map from errors to answers, and what it logs.

    twin_engine.storage.StorageUnavailable  503 + Retry-After, OperationOutcome "transient":
        (any store: twin, audit, replay       not answered; says whether the call was
        cache, app sessions)                  recorded (normally: not). Checked first: some
                                              classes are also ServiceErrors (AuditUnavailable)
    cds_service.errors.Unauthorized           a bare 401; the reason goes to our log only
    cds_service.errors.ApiError               its status, ``{"detail": message}`` (the auditor
        (and smart_app.errors.AppError)       API and the clinician app read FastAPI's shape)
    cds_service.errors.ServiceError < 500     its status, OperationOutcome with its issue code
                                              (the CDS Hooks 2.0 error answer)
    anything else, a ServiceError of 500,     500: not answered; says whether the call's
        twin_engine's TwinEngineError and     audit record was written. The pipeline turns
        onnx_models' ModelError included      the caller's faults into ServiceErrors (an
                                              unusable bundle: DataUnavailable 412; missing
                                              model inputs: a "not computed" card), so one
                                              of theirs that reaches the edge is ours.
    fastapi RequestValidationError            422 naming each field (``edge``)

Every such failure is one log line; a fault of ours carries its traceback, once (the
server does not log it again, because the exception does not leave the app). A store
outage is logged without a traceback: it is not a bug, and a burst of calls during an
outage would otherwise bury the log.

Whether a call was recorded is known where the record is written: the hook pipeline
marks the exception it re-raises after writing the failed call's record
(``mark_recorded``); an exception without the mark was not recorded.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds_service.errors import RECORDED_MARK, ApiError, ServiceError, Unauthorized
from cds_service.http.edge import RequestLimits, operation_outcome, request_validation_error
from twin_engine.storage import StorageUnavailable

log = logging.getLogger("twin_cds")

#: Seconds a caller should wait before retrying during a store outage. A PostgreSQL
#: restart or failover typically takes seconds; a full disk needs an operator, and the
#: caller keeps getting 503 (never a wrong answer) until then.
RETRY_AFTER_S = 5


def recorded(exc: BaseException) -> bool | None:
    """Whether the call that raised ``exc`` is on the audit trail (None: unknown)."""
    if getattr(exc, RECORDED_MARK, False):
        return True
    if isinstance(exc, StorageUnavailable):
        return exc.recorded
    return False


def _record_clause(was_recorded: bool | None) -> str:
    if was_recorded is None:
        return "whether it was recorded is unknown (the store failed while committing)"
    return "it was recorded as failed" if was_recorded else "it was not recorded"


def unavailable_message(exc: StorageUnavailable) -> str:
    return (
        "a data store is unavailable: this call was not answered and "
        f"{_record_clause(recorded(exc))}; retry after {RETRY_AFTER_S} s"
    )


def internal_error_message(exc: BaseException) -> str:
    return f"internal error: this call was not answered and {_record_clause(recorded(exc))}"


def answer(method: str, path: str, exc: BaseException) -> Response:
    """The response to ``exc`` (see the module's table), logged once."""
    if isinstance(exc, StorageUnavailable):
        # The message names the store and the failure (no patient data, no URL password).
        log.warning("503 on %s %s: %s: %s", method, path, type(exc).__name__, exc)
        return operation_outcome(
            503, "transient", unavailable_message(exc), {"Retry-After": str(RETRY_AFTER_S)}
        )
    if isinstance(exc, ServiceError) and exc.status_code < 500:
        if isinstance(exc, Unauthorized):
            # The reason is for the operator; the caller learns nothing from a bare 401.
            log.warning("401 on %s: %s", path, exc)
            return Response(status_code=401)
        message = exc.public_message or str(exc)
        if isinstance(exc, ApiError):
            return JSONResponse(
                {"detail": message}, status_code=exc.status_code, headers=exc.headers or None
            )
        return operation_outcome(exc.status_code, exc.issue_code, message, exc.headers or None)
    # Never the request body, which carries patient data.
    log.error("500 on %s %s: unexpected %s", method, path, type(exc).__name__, exc_info=exc)
    return operation_outcome(500, "exception", internal_error_message(exc))


async def _handler(request: Request, exc: Exception) -> Response:
    return answer(request.method, request.url.path, exc)


class _LastResort:
    """Catches any fault that reached the top of the app: answers it as ``answer`` says
    when nothing was sent yet, and does not re-raise (so the server neither logs it a
    second time nor drops the connection without an answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            response = answer(str(scope.get("method", "")), str(scope.get("path", "")), exc)
            if started:
                return  # the answer is already under way; the log says what went wrong
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """The edge: request limits outermost (before CORS, auth or parsing), the errors'
    answers, and the catch-all wrapping everything. Call after every other middleware."""
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(ServiceError, _handler)
    app.add_exception_handler(StorageUnavailable, _handler)
    app.add_middleware(RequestLimits)
    app.add_middleware(_LastResort)
