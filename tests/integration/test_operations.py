"""The service as operators run it: uvicorn with workers, scraped, and stopped mid-call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cds_service.audit.sql import SqliteAuditLog
from tests.conftest import REPO, hook_request, prefetch_from_bundle
from tests.integration.faulty_fhir import _free_port, faulty_fhir_server

pytestmark = pytest.mark.integration

HOOK = "/cds-services/ascvd-risk"


@contextmanager
def uvicorn(tmp_path: Path, env: dict[str, str], *workers: str) -> Iterator[tuple[str, Any]]:
    """The service under uvicorn (the README's command), in its own process group."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "twin_cds.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *workers,
    ]
    full_env = {
        **os.environ,
        "TWIN_CDS_DATA_DIR": str(tmp_path / "data"),
        "TWIN_CDS_AUTH_REQUIRED": "false",
        **env,
    }
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - our interpreter, uvicorn and our app
        cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "uvicorn.log").read_text()[-2000:]
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def _hook_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "twin_cds_hook_duration_seconds_count" and s.labels == {
                "service": "ascvd-risk",
                "outcome": "ok",
            }:
                return s.value
    return 0.0


def test_metrics_add_up_across_uvicorn_workers(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, any worker's /metrics counts every worker's calls."""
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(prom)}
    pf = prefetch_from_bundle(demo_bundles[0])
    with uvicorn(tmp_path, env, "--workers", "2") as (base, _):
        for _ in range(8):
            # A new connection each time, so both workers take calls.
            r = httpx.post(base + HOOK, json=hook_request(pf["patient"]["id"], pf), timeout=30)
            assert r.status_code == 200
        counts = {_hook_count(httpx.get(base + "/metrics", timeout=10).text) for _ in range(6)}
        files = {p.name.split("_")[-1] for p in prom.glob("*.db")}
    assert counts == {8.0}
    assert len(files) >= 2, "the calls should have been served by both workers"


@pytest.mark.parametrize("group_commit", ["false", "true"])
def test_sigterm_lets_an_in_flight_call_finish_and_be_audited(
    tmp_path: Path, group_commit: str
) -> None:
    """A call waiting on a slow FHIR server when uvicorn is told to stop still answers 200
    and is on the audit trail (committed one by one or in a batch); then the process exits
    cleanly."""
    with faulty_fhir_server() as (fhir_base, state):
        state["mode"] = "slow"  # every search takes 2 s
        env = {
            "TWIN_CDS_FHIR_SERVER_ALLOWLIST": json.dumps([fhir_base]),
            "TWIN_CDS_FHIR_BUDGET_MS": "5000",
            "TWIN_CDS_AUDIT_GROUP_COMMIT": group_commit,
        }
        body = {
            "hook": "patient-view",
            "hookInstance": "in-flight-at-sigterm",
            "fhirServer": fhir_base,
            "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"},
            "context": {"patientId": "p1", "userId": "Practitioner/1"},
        }
        with uvicorn(tmp_path, env) as (base, proc):
            answer: dict[str, Any] = {}

            def call() -> None:
                r = httpx.post(base + HOOK, json=body, timeout=30)
                answer["status"], answer["cards"] = r.status_code, r.json().get("cards")
                answer["at"] = time.monotonic()

            caller = threading.Thread(target=call)
            caller.start()
            time.sleep(0.8)  # the call is now waiting on the FHIR searches
            proc.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            caller.join(timeout=30)
            code = proc.wait(timeout=30)
    assert answer["status"] == 200 and isinstance(answer["cards"], list)
    assert answer["at"] > stopped_at  # it was answered after the signal, not before
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)
    log = SqliteAuditLog(tmp_path / "data" / "audit.sqlite")
    try:
        (record,) = log.records(hook_instance="in-flight-at-sigterm")
        assert record.body["status"] == ("ok" if answer["cards"] else "no-card")
        assert log.verify().ok
    finally:
        log.close()
