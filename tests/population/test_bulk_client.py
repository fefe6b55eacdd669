"""The $export client's corners a real server will not produce on demand (MockTransport):
Retry-After as an HTTP date, no Retry-After at all, an expired job (410), a failed job
(500 with an OperationOutcome), a file URL on another host, and the deadline."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.population.bulk import (
    BulkExportClient,
    BulkExportError,
    BulkJobExpired,
    retry_after_seconds,
)

BASE = "https://ehr.example/fhir"
STATUS = f"{BASE}/bulk-status/job1"


def _client(
    handler: Callable[[httpx.Request], httpx.Response], waits: list[float]
) -> BulkExportClient:
    now = [0.0]

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    return BulkExportClient(
        BASE,
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=sleep,
        clock=lambda: now[0],
    )


def _kickoff(request: httpx.Request) -> httpx.Response | None:
    if request.url.path.endswith("$export"):
        assert request.headers["Prefer"] == "respond-async"
        return httpx.Response(202, headers={"Content-Location": STATUS})
    return None


def _manifest(
    files: list[dict[str, Any]], errors: list[dict[str, Any]] | None = None
) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "transactionTime": "2026-01-01T00:00:00Z",
            "request": BASE,
            "output": files,
            "error": errors or [],
        },
    )


def test_retry_after_http_date_is_honoured() -> None:
    """Retry-After as an HTTP date 30 s ahead: the client waits about 30 s, then polls."""
    assert retry_after_seconds("120") == 120.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    )
    assert retry_after_seconds("soon") is None


def test_polls_follow_the_servers_retry_after_then_download(tmp_path: Path) -> None:
    """202 with Retry-After 7 then 3, then the manifest: waits are 7 and 3, files written."""
    answers = iter(
        [
            httpx.Response(202, headers={"Retry-After": "7", "X-Progress": "10%"}),
            httpx.Response(202, headers={"Retry-After": "3"}),
            _manifest([{"type": "Patient", "url": f"{BASE}/files/p.ndjson"}]),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if (r := _kickoff(request)) is not None:
            return r
        if request.url.path.endswith("/files/p.ndjson"):
            return httpx.Response(200, content=b'{"resourceType":"Patient","id":"a"}\n')
        if request.method == "DELETE":
            return httpx.Response(202)
        return next(answers)

    waits: list[float] = []
    result = _client(handler, waits).export(tmp_path / "x")
    assert waits == [7.0, 3.0]
    assert [(f.type, f.lines) for f in result.files] == [("Patient", 1)]


def test_without_retry_after_the_client_backs_off() -> None:
    """No Retry-After: 1, 2, 4 s between polls (doubling), not a busy loop."""
    answers = iter([httpx.Response(202)] * 3 + [_manifest([])])
    waits: list[float] = []
    _client(lambda r: next(answers), waits).wait(STATUS)
    assert waits == [1.0, 2.0, 4.0]


def test_an_expired_job_is_named() -> None:
    """410 Gone on the status URL: BulkJobExpired, telling to start a new export."""
    waits: list[float] = []
    client = _client(lambda r: httpx.Response(410), waits)
    with pytest.raises(BulkJobExpired, match="expired or deleted"):
        client.wait(STATUS)


def test_a_failed_job_reports_the_servers_diagnostics() -> None:
    """500 with an OperationOutcome: the error carries its diagnostics."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "disk full"}],
    }
    waits: list[float] = []
    client = _client(lambda r: httpx.Response(500, json=outcome), waits)
    with pytest.raises(BulkExportError, match="disk full"):
        client.wait(STATUS)


def test_a_file_on_another_host_is_not_fetched(tmp_path: Path) -> None:
    """A manifest pointing at another origin is refused: the token never leaves the EHR."""
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        if (r := _kickoff(request)) is not None:
            return r
        return _manifest([{"type": "Patient", "url": "https://elsewhere.example/p.ndjson"}])

    with pytest.raises(BulkExportError, match="not on the FHIR server's origin"):
        _client(handler, []).export(tmp_path / "x")
    assert not any("elsewhere" in u for u in fetched)


def test_error_file_diagnostics_are_collected(tmp_path: Path) -> None:
    """The manifest's error file (OperationOutcome NDJSON) is kept and each issue counted."""
    issue = {"severity": "error", "diagnostics": "Observation/9 unreadable"}
    oo = json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode() + b"\n"

    def handler(request: httpx.Request) -> httpx.Response:
        if (r := _kickoff(request)) is not None:
            return r
        if request.url.path.endswith("err.ndjson"):
            return httpx.Response(200, content=oo)
        if request.method == "DELETE":
            return httpx.Response(202)
        return _manifest([], [{"type": "OperationOutcome", "url": f"{BASE}/files/err.ndjson"}])

    result = _client(handler, []).export(tmp_path / "x")
    assert result.errors == ("error: Observation/9 unreadable",)
    assert not list((tmp_path / "x").glob("*OperationOutcome*"))  # not read as patient data


def test_the_deadline_stops_polling() -> None:
    """A job still running at the deadline is an error naming its last progress."""
    waits: list[float] = []
    client = _client(
        lambda r: httpx.Response(202, headers={"Retry-After": "50", "X-Progress": "3%"}), waits
    )
    with pytest.raises(BulkExportError, match="3%"):
        client.wait(STATUS, timeout_s=120)
    assert sum(waits) <= 120
