"""What the HTTP edge answers when a call fails on our side: a store outage is 503 with
Retry-After, our own fault is 500, and each body says whether the call was recorded;
each failure is one log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.audit.log import AuditUnavailable, AuditWriteError
from cds_service.settings import Settings
from smart_app.sessions import SessionStoreUnavailable
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app
from twin_engine.errors import TwinStoreUnavailable


@pytest.fixture(params=[False, True], ids=["commit-per-call", "group-commit"])
def client(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data", auth_required=False, audit_group_commit=request.param
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _call(client: TestClient, bundle: dict[str, Any]) -> Any:
    prefetch = prefetch_from_bundle(bundle)
    body = hook_request(prefetch["patient"]["id"], prefetch)
    return client.post("/cds-services/ascvd-risk", json=body)


def _diagnostics(response: Any) -> str:
    return str(response.json()["issue"][0]["diagnostics"])


def _raise(exc: Exception) -> Any:
    def fail(*_: Any, **__: Any) -> Any:
        raise exc

    return fail


def _failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "twin_cds"]


def test_a_store_outage_is_503_with_retry_after_and_says_not_recorded(
    client: TestClient,
    demo_bundles: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twin store and audit both down: 503, Retry-After, not answered and not recorded;
    one warning line, no traceback."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(rt.twins, "save", _raise(TwinStoreUnavailable("disk full")))
    monkeypatch.setattr(rt.audit, "record_many", _raise(AuditUnavailable("disk full")))
    response = _call(client, demo_bundles[0])
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "not answered and it was not recorded" in _diagnostics(response)
    (line,) = _failure_logs(caplog)
    assert line.levelno == logging.WARNING and line.exc_info is None


def test_a_twin_store_outage_with_a_working_audit_says_recorded_as_failed(
    client: TestClient, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the twin store is down: still 503, and the body says the failure is recorded,
    as the trail shows."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(rt.twins, "save", _raise(TwinStoreUnavailable("read-only")))
    response = _call(client, demo_bundles[0])
    assert response.status_code == 503
    assert "it was recorded as failed" in _diagnostics(response)
    (record,) = rt.audit.records()
    assert record.body["status"] == "error"
    assert record.body["error"] == "TwinStoreUnavailable"


def test_our_own_fault_is_500_recorded_and_logged_once_with_its_trace(
    client: TestClient,
    demo_bundles: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug while computing: 500 saying the failure was recorded; one error line with
    the traceback."""
    import cds_service.pipeline.run as pipeline

    monkeypatch.setattr(pipeline, "derive_features", _raise(ZeroDivisionError("a bug")))
    response = _call(client, demo_bundles[0])
    assert response.status_code == 500
    assert "not answered and it was recorded as failed" in _diagnostics(response)
    (line,) = _failure_logs(caplog)
    assert line.levelno == logging.ERROR and line.exc_info is not None


def test_a_500_whose_record_failed_says_it_was_not_recorded(
    client: TestClient, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit refuses the record for a reason of ours (not storage): 500, not recorded."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(rt.audit, "record_many", _raise(AuditWriteError("constraint")))
    response = _call(client, demo_bundles[0])
    assert response.status_code == 500
    assert "it was not recorded" in _diagnostics(response)
    assert "Retry-After" not in response.headers


def test_feedback_during_an_audit_outage_is_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feedback that cannot be stored is refused as unavailable, not lost with a 200."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    monkeypatch.setattr(rt.audit, "record_feedback", _raise(AuditUnavailable("down")))
    feedback = {
        "feedback": [
            {"card": "c-1", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}
        ]
    }
    response = client.post("/cds-services/ascvd-risk/feedback", json=feedback)
    assert response.status_code == 503
    assert "not recorded" in _diagnostics(response)


def test_the_app_answers_503_when_its_session_store_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's session store is down: 503 with Retry-After, not a 500 or a 401."""
    store = client.app.state.app_sessions  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "get", _raise(SessionStoreUnavailable("down")))
    client.cookies.set("twin_cds_session", "x" * 43, path="/app")
    response = client.get("/app/api/session")
    assert response.status_code == 503
    assert "retry-after" in response.headers


def test_a_fault_of_ours_does_not_leave_the_app(
    tmp_path: Path, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 500 is the app's last word: the exception is not re-raised to the server, which
    would log its traceback a second time (or drop the connection)."""
    import cds_service.pipeline.run as pipeline

    monkeypatch.setattr(pipeline, "derive_features", _raise(ZeroDivisionError("a bug")))
    settings = Settings(data_dir=tmp_path / "data", auth_required=False)
    # raise_server_exceptions=True: anything that escapes the app fails this call.
    with TestClient(create_app(settings), raise_server_exceptions=True) as strict:
        response = _call(strict, demo_bundles[0])
    assert response.status_code == 500
