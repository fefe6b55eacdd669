"""What the HTTP edge answers when a call fails on our side, and what it logs.

    a store is down (StorageUnavailable)   503 + Retry-After: not answered; says whether
                                           the call was recorded (normally: not)
    any other fault of ours                500: not answered; says whether the call's
                                           audit record was written

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
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin_engine.storage import StorageUnavailable

log = logging.getLogger("twin_cds")

#: Seconds a caller should wait before retrying during a store outage. A PostgreSQL
#: restart or failover typically takes seconds; a full disk needs an operator, and the
#: caller keeps getting 503 (never a wrong answer) until then.
RETRY_AFTER_S = 5

_RECORDED = "_twin_cds_recorded"


def mark_recorded(exc: BaseException) -> None:
    """Say on the exception that the failed call's audit record was written."""
    setattr(exc, _RECORDED, True)


def recorded(exc: BaseException) -> bool | None:
    """Whether the call that raised ``exc`` is on the audit trail (None: unknown)."""
    if getattr(exc, _RECORDED, False):
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


def _outcome(code: str, message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }


def storage_unavailable_response(request: Request, exc: StorageUnavailable) -> JSONResponse:
    # The message names the store and the failure (no patient data, no URL password).
    log.warning("503 on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse(
        _outcome("transient", unavailable_message(exc)),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class _LastResort:
    """Catches any fault that reached the top of the app: logs it once with its trace,
    answers 500 when nothing was sent yet, and does not re-raise (so the server neither
    logs it a second time nor drops the connection without an answer)."""

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
            path = scope.get("path", "")
            if isinstance(exc, StorageUnavailable):
                log.warning("503 on %s: %s: %s", path, type(exc).__name__, exc)
                response = JSONResponse(
                    _outcome("transient", unavailable_message(exc)),
                    status_code=503,
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            else:
                # Never the request body, which carries patient data.
                log.error("500 on %s: unexpected %s", path, type(exc).__name__, exc_info=exc)
                response = JSONResponse(
                    _outcome("exception", internal_error_message(exc)), status_code=500
                )
            if started:
                return  # the answer is already under way; the log says what went wrong
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Answer store outages 503 and our own faults 500, each logged once. Call last, so
    the catch-all wraps every other middleware."""

    @app.exception_handler(StorageUnavailable)
    async def _unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        return storage_unavailable_response(request, exc)

    app.add_middleware(_LastResort)
