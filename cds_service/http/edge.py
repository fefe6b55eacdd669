"""Limits at the HTTP edge: how much a caller may make us read before we know who it is.

Every limit is checked before anything is parsed:

- the request head: at most ``MAX_HEADER_BYTES`` of header names and values (431);
- a bearer token: at most ``cds_service.http.auth.MAX_TOKEN_BYTES`` (401, in ``auth``);
- a body: ``MAX_HOOK_BODY_BYTES`` on a hook call, ``MAX_FEEDBACK_BODY_BYTES`` on
  feedback, ``MAX_BODY_BYTES`` on every other route (the clinician app's API, the
  launch), counted as it arrives, so a missing or false ``Content-Length`` does not
  get a larger body read (413);
- hook and feedback bodies must be ``application/json`` (415).

A request-validation error is answered with where and what (never the value sent,
which may be ``inf`` that JSON cannot carry, or patient data, and never the
validation library's documentation links, which name its version).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import MutableHeaders

from cds_service.errors import BodyTooLarge, UnsupportedMediaType

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Header names and values together. A CDS Hooks call needs a few hundred bytes plus
#: the JWT (at most 8 KiB, auth.MAX_TOKEN_BYTES); browsers stay far below 16 KiB
#: (uvicorn's h11 parser refuses a head of more than 16 KiB too; httptools does not).
MAX_HEADER_BYTES = 16 * 1024
#: What the HTTP server itself buffers of an unfinished request head before it answers
#: 400 and closes (``twin-cds serve`` runs uvicorn's h11 parser with this cap). uvicorn's
#: default httptools parser has no cap and re-copies a growing header on every read: a
#: 32 MB token held the event loop for seconds there before the app saw a byte. Twice
#: MAX_HEADER_BYTES, so a head between the two still gets the app's own 431.
SERVER_MAX_HEAD_BYTES = 2 * MAX_HEADER_BYTES
#: A hook call with a whole patient's prefetch: the largest body we accept.
MAX_HOOK_BODY_BYTES = 32 * 1024 * 1024
#: Feedback is at most 100 entries (hooks.FeedbackRequest) of a few hundred bytes each.
MAX_FEEDBACK_BODY_BYTES = 1024 * 1024
#: The clinician app's API and every other route take a small JSON object or nothing.
MAX_BODY_BYTES = 64 * 1024

#: Routes that read their body themselves, with their own limit and audit of refusals.
_HOOK_ROUTE = re.compile(r"^/cds-services/[^/]+(/feedback)?$")


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (CDS Hooks 2.0 sends JSON;
    a form or text/plain post is not a hook call, and may be a cross-site one)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(f"send application/json, not {media[:60] or 'no type'!r}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge as soon as it is known to exceed ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BodyTooLarge(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_problems(errors: list[Any], limit: int = 10) -> str:
    """``loc: msg; ...`` from pydantic errors, without the input or documentation URLs."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors[:limit]
    )


def operation_outcome(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A FHIR OperationOutcome with one error issue: the CDS Hooks 2.0 error body."""
    return JSONResponse(
        status_code=status,
        content={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}],
        },
        headers=headers,
    )


async def request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    """422 naming each field and what is wrong with it; safe for any input (inf, NaN)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError | ValidationError) else []
    return operation_outcome(422, "invalid", validation_problems(list(errors)))


class ServerTiming:
    """ASGI middleware: Server-Timing (``app;dur=`` ms, from the request's arrival here to
    its response's start) on every answer, errors as well as cards: an EHR team (and
    bench/) sees our share of the latency.

    Plain ASGI, not starlette's ``BaseHTTPMiddleware``, which streams every response
    through an anyio task group (bench/profile_cold.py: a sizeable share of a new
    patient's call went to the two such middlewares)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = 1000 * (time.perf_counter() - started)
                MutableHeaders(scope=message)["Server-Timing"] = f"app;dur={elapsed_ms:.3f}"
            await send(message)

        await self.app(scope, receive, send_timed)


class RequestLimits:
    """ASGI middleware: the head's size, then every body's, before the app sees either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = sum(len(name) + len(value) for name, value in scope.get("headers", ()))
        if head > MAX_HEADER_BYTES:
            message = f"request headers over {MAX_HEADER_BYTES} bytes"
            await operation_outcome(431, "too-costly", message)(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS") or _HOOK_ROUTE.match(
            str(scope.get("path", ""))
        ):
            # No body is read on these methods; hook routes read theirs with read_body.
            await self.app(scope, receive, send)
            return
        body = await self._body(scope, receive, MAX_BODY_BYTES)
        if body is None:
            await operation_outcome(413, "too-costly", f"request body over {MAX_BODY_BYTES} bytes")(
                scope, receive, send
            )
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
