"""The HTTP edge maps each error class to its answer in one place (cds_service.http.failures)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cds_service.audit.chain import AuditUnavailable, AuditWriteError
from cds_service.errors import (
    AuditorUnauthorized,
    BodyTooLarge,
    DataUnavailable,
    RecordNotFound,
    ServiceError,
    Unauthorized,
    UnknownService,
    UnsupportedMediaType,
)
from cds_service.http.failures import install
from smart_app.errors import NoSession, WhatIfRefused
from twin_engine.errors import IngestError


def _client(exc: BaseException) -> TestClient:
    app = FastAPI()

    @app.get("/fail")
    async def fail() -> None:
        raise exc

    install(app)
    return TestClient(app, raise_server_exceptions=False)


def _outcome(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    issue = {"severity": "error", "code": code, "diagnostics": message}
    return status, {"resourceType": "OperationOutcome", "issue": [issue]}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (UnknownService("no CDS service 'x'"), _outcome(404, "not-found", "no CDS service 'x'")),
        (DataUnavailable("no Patient"), _outcome(412, "not-found", "no Patient")),
        (
            BodyTooLarge("request body over 9 bytes"),
            _outcome(413, "too-costly", "request body over 9 bytes"),
        ),
        (UnsupportedMediaType("send JSON"), _outcome(415, "exception", "send JSON")),
        (RecordNotFound("no audit record 7"), (404, {"detail": "no audit record 7"})),
        (
            AuditorUnauthorized("bad signature"),
            (401, {"detail": "auditor authentication required"}),
        ),
        (NoSession("no app session"), (401, {"detail": "no app session"})),
        (WhatIfRefused("needs LDL"), (422, {"detail": "needs LDL"})),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "",
)
def test_each_error_class_gets_its_status_and_body(
    exc: BaseException, expected: tuple[int, dict[str, Any]]
) -> None:
    """Hook-side errors answer an OperationOutcome with their issue code; the JSON APIs'
    errors answer FastAPI's {"detail"} shape, with the public message when there is one."""
    response = _client(exc).get("/fail")
    assert (response.status_code, response.json()) == expected


def test_an_auditor_challenge_carries_its_header() -> None:
    """401 for an auditor says how to authenticate (Bearer)."""
    response = _client(AuditorUnauthorized("expired")).get("/fail")
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_untrusted_client_gets_a_bare_401() -> None:
    """The reason a CDS client was refused stays in our log: no body at all."""
    response = _client(Unauthorized("kid not known")).get("/fail")
    assert (response.status_code, response.content) == (401, b"")


@pytest.mark.parametrize(
    "exc", [AuditUnavailable("disk full")], ids=["service-error-and-storage-outage"]
)
def test_a_storage_outage_wins_over_its_other_base(exc: BaseException) -> None:
    """AuditUnavailable is a ServiceError (500) and a StorageUnavailable: it is a 503."""
    response = _client(exc).get("/fail")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    "exc",
    [AuditWriteError("constraint"), ServiceError("ours"), IngestError("late"), KeyError("bug")],
    ids=lambda e: type(e).__name__,
)
def test_our_own_faults_are_500_and_say_they_were_not_recorded(exc: BaseException) -> None:
    """A ServiceError of 500, a twin_engine error that reached the edge, or any other
    exception: 500, never its message (which may name patient data)."""
    response = _client(exc).get("/fail")
    assert _outcome(
        500, "exception", "internal error: this call was not answered and it was not recorded"
    ) == (
        response.status_code,
        response.json(),
    )
