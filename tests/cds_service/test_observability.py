"""Metrics, the per-call log line and readiness, after a scripted set of hook calls."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cds_service.ops.logs import configure_logging, drop_identifiers, formatter
from cds_service.services.catalog import SERVICES
from cds_service.settings import Settings
from tests.audit.stores import pg_available, pg_schema, pg_url
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app

TOKEN = "tok-observability-5f1e-never-logged"  # noqa: S105 - a test token
USER = "Practitioner/p1"
HOOK = "/cds-services/ascvd-risk"


def _eligible(demo_bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """The first generated patient the PCE answers with a card."""
    for bundle in demo_bundles:
        pf = prefetch_from_bundle(bundle)
        codes = {
            c.get("code")
            for e in pf["observations"]["entry"]
            for c in e["resource"]["code"]["coding"]
        }
        if {"2093-3", "2085-9"} <= codes:
            return pf
    raise AssertionError("no generated patient has a lipid panel")


def _deceased(prefetch: dict[str, Any]) -> dict[str, Any]:
    """The same patient recorded as deceased: outside every model's population, no card."""
    pf = copy.deepcopy(prefetch)
    pf["patient"]["deceasedDateTime"] = "2025-03-01T00:00:00Z"
    return pf


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _script(client: TestClient, prefetch: dict[str, Any], monkeypatch: Any) -> list[int]:
    """Seven calls, one of each outcome and then some; returns their status codes."""
    pid = prefetch["patient"]["id"]
    codes = [
        client.post(HOOK, json=hook_request(pid, prefetch)).status_code,  # ok, new twin
        client.post(HOOK, json=hook_request(pid, prefetch)).status_code,  # ok, same twin
        client.post(HOOK, json=hook_request(pid, _deceased(prefetch))).status_code,  # no-card
        client.post(
            HOOK,
            json=hook_request(
                pid,
                {"observations": prefetch["observations"]},
                fhirServer="https://not-allowed.example/fhir",
                fhirAuthorization={
                    "access_token": TOKEN,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "patient/*.read",
                    "subject": "cds-service",
                },
            ),
        ).status_code,  # 412: no Patient, the server is not ours to contact
        client.post(
            HOOK, content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code,  # 400
        client.post("/cds-services/no-such-service", json=hook_request(pid)).status_code,  # 404
    ]
    import cds_service.pipeline.run as pipeline

    def broken(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "derive_features", broken)
    with TestClient(client.app, raise_server_exceptions=False) as faulty:
        codes.append(faulty.post(HOOK, json=hook_request(pid, prefetch)).status_code)  # 500
    return codes


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", auth_required=False))) as c:
        yield c


def test_metrics_count_each_call_by_service_and_outcome(
    client: TestClient, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the script, /metrics shows exactly its calls, appends, versions and model runs."""
    before = _samples(client.get("/metrics").text)
    codes = _script(client, _eligible(demo_bundles), monkeypatch)
    assert codes == [200, 200, 200, 412, 400, 404, 500]
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    calls = "twin_cds_hook_duration_seconds_count"
    assert delta(calls, service="ascvd-risk", outcome="ok") == 2
    assert delta(calls, service="ascvd-risk", outcome="no-card") == 1
    assert delta(calls, service="ascvd-risk", outcome="412") == 1
    assert delta(calls, service="ascvd-risk", outcome="4xx") == 1
    assert delta(calls, service="unknown", outcome="4xx") == 1
    assert delta(calls, service="ascvd-risk", outcome="error") == 1
    assert delta("twin_cds_audit_append_duration_seconds_count", kind="hook") == 7
    assert after[("twin_cds_audit_chain_length", ())] == 7
    # The second call's twin equals the first's (no version); death changes it (one), and
    # the faulty call's twin, the first one again, differs from the latest (one more).
    assert delta("twin_cds_twin_versions_written_total") == 3
    assert delta("twin_cds_model_run_duration_seconds_count", model="pce") == 2
    assert delta("twin_cds_fhir_budget_overruns_total", server="https://not-allowed.example") == 0


def test_no_label_carries_a_patient_user_call_or_token(
    client: TestClient, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Label values are services, outcomes, kinds, models: never an identifier."""
    prefetch = _eligible(demo_bundles)
    _script(client, prefetch, monkeypatch)
    text = client.get("/metrics").text
    values = {
        v
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for v in s.labels.values()
    }
    hook_instance = hook_request("x")["hookInstance"]
    for secret in (prefetch["patient"]["id"], USER, hook_instance, TOKEN):
        assert not [v for v in values if secret in v], secret


def test_one_log_line_per_call_without_patient_or_token(
    client: TestClient, demo_bundles: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call is one JSON hook.call line with its outcome and stages; no PHI, no token."""
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    prefetch = _eligible(demo_bundles)
    _script(client, prefetch, monkeypatch)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    calls = [e for e in lines if e["event"] == "hook.call"]
    assert [(e["service"], e["outcome"], e["status"]) for e in calls] == [
        ("ascvd-risk", "ok", 200),
        ("ascvd-risk", "ok", 200),
        ("ascvd-risk", "no-card", 200),
        ("ascvd-risk", "412", 412),
        ("ascvd-risk", "4xx", 400),
        ("unknown", "4xx", 404),
        ("ascvd-risk", "error", 500),
    ]
    assert set(calls[0]["stages_ms"]) == {"gather", "twin", "store", "models", "audit"}
    assert calls[0]["hook_instance"] == hook_request("x")["hookInstance"]
    assert all(e["level"] == "info" and e["logger"] == "twin_cds.hooks" for e in calls)
    for secret in (prefetch["patient"]["id"], USER, TOKEN, "Bearer"):
        assert secret not in text, secret


def test_the_redaction_processor_covers_uvicorns_access_lines() -> None:
    """An OAuth code and state in an access-log URL are redacted in the JSON line."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/app/callback?code=c0de-5ecret&state=st4te-5ecret", "1.1", 302),
        None,
    )
    line = json.loads(formatter("json").format(record))
    assert "code=[redacted]" in line["event"] and "state=[redacted]" in line["event"]
    assert "5ecret" not in json.dumps(line)


def test_identifier_keys_never_reach_a_log_event() -> None:
    """A patient id or token passed to any event is dropped, and the drop is named."""
    with structlog.testing.capture_logs(processors=[drop_identifiers]) as events:
        structlog.get_logger("twin_cds.test").info("x", patient_id="p1", token=TOKEN, service="s")
    assert events == [
        {"event": "x", "service": "s", "dropped_keys": ["patient_id", "token"], "log_level": "info"}
    ]


def test_readyz_names_the_model_shas_when_ready(client: TestClient) -> None:
    """Ready: every store answered and each model is listed with its sha256."""
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert {"twin_store", "audit_trail", "app_sessions", "models"} <= set(body["checks"])
    registry = client.app.state.runtime.registry  # type: ignore[attr-defined]
    assert body["checks"]["models"]["detail"]["pce"] == registry.get("pce").sha256


class _Proxy:
    """A TCP forwarder to PostgreSQL that the test can pull the plug on."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        # shutdown wakes the thread blocked in accept(); a bare close would leave the
        # socket listening until that accept returned.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_readyz_fails_when_postgresql_is_unreachable(tmp_path: Path) -> None:
    """With its database gone, the replica answers 503 and names each store that failed."""
    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with pg_schema() as schema:
        proxy = _Proxy(("127.0.0.1", 5432))
        url = pg_url(schema).replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        settings = Settings(data_dir=tmp_path / "data", auth_required=False, database_url=url)
        with TestClient(create_app(settings)) as c:
            assert c.get("/readyz").status_code == 200
            proxy.cut()
            response = c.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        failed = {name for name, check in body["checks"].items() if not check["ok"]}
        assert failed == {"twin_store", "audit_trail", "app_sessions", "schema"}
        assert body["checks"]["models"]["ok"]
        assert str(proxy.port) not in json.dumps(body)  # never the URL


def test_fhir_fetches_are_counted_by_server_with_failures_and_overruns(tmp_path: Path) -> None:
    """Failing searches count by status class; a hanging server counts one budget overrun."""
    from tests.integration.faulty_fhir import PATIENT, faulty_fhir_server

    with faulty_fhir_server() as (base, state):
        settings = Settings(
            data_dir=tmp_path / "data",
            auth_required=False,
            fhir_server_allowlist=(base,),
            fhir_budget_ms=400,
        )
        server = base.removesuffix("/fhir")
        body = {
            "hook": "patient-view",
            "hookInstance": "fetch-1",
            "fhirServer": base,
            "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer"},
            "context": {"patientId": "p1", "userId": USER},
            "prefetch": {"patient": PATIENT},
        }
        with TestClient(create_app(settings)) as c:
            before = _samples(c.get("/metrics").text)
            state["mode"] = "500"
            assert c.post(HOOK, json=body).status_code == 200
            state["mode"] = "hang"
            assert c.post(HOOK, json=body).status_code == 200
            after = _samples(c.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    # One search per prefetch key but the Patient's, which came in prefetch.
    searches = len(SERVICES["ascvd-risk"].prefetch) - 1
    assert delta("twin_cds_fhir_request_errors_total", server=server, reason="5xx") == searches
    assert delta("twin_cds_fhir_request_duration_seconds_count", server=server) == 2 * searches
    assert delta("twin_cds_fhir_budget_overruns_total", server=server) == 1


def test_server_timing_is_on_a_refused_call_once_with_three_decimals(client: TestClient) -> None:
    """A 415 answer carries exactly one Server-Timing header, ``app;dur=<ms with 3 decimals>``."""
    r = client.post(
        "/cds-services/ascvd-risk", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415
    timings = r.headers.get_list("server-timing")
    assert len(timings) == 1
    name, duration = timings[0].split(";dur=")
    assert name == "app"
    assert float(duration) >= 0 and len(duration.split(".")[1]) == 3
