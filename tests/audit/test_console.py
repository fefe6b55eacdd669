"""The auditor console: OIDC sign-in (PKCE) with the EHR simulator as provider, then pages.

The simulator runs under uvicorn on 127.0.0.1 (a real HTTP provider: the console's
server-side code exchange reaches it over the network); the service runs in-process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.audit.log import ChainedAuditLog
from cds_service.http.auth import CdsClientConfig
from cds_service.settings import Settings
from ehr_sim.authorization import public_jwk
from ehr_sim.servers import free_port
from ehr_sim.simulator import SimulatedClient, SimulatorConfig, create_simulator_app
from tests.audit.test_api import CLIENT_KEY, EHR, _jwks, client_token
from tests.conftest import hook_request, prefetch_from_bundle
from twin_cds.app import create_app

BASE = "http://127.0.0.1:8000"
CALLBACK = f"{BASE}/audit/ui/callback"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class Provider:
    url: str


def _serve(claims: tuple[tuple[str, Any], ...]) -> Iterator[Provider]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = SimulatorConfig(
        fhir_upstream="http://127.0.0.1:9/fhir",  # not used: no FHIR is read at sign-in
        public_base_url=url,
        clients=(
            SimulatedClient(
                client_id="twin-cds-audit-console",
                redirect_uris=(CALLBACK,),
                launch_url=f"{BASE}/audit/ui",
                id_token_claims=claims,
            ),
        ),
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_simulator_app(config, signing_key=KEY),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield Provider(url)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """The simulator signing in an auditor of hospital-a."""
    yield from _serve((("role", "auditor"), ("tenant", "hospital-a")))


def _console(tmp_path: Any, provider: Provider, tenant: str | None = None) -> TestClient:
    jwk = {**public_jwk(KEY), "use": "sig"}
    settings = Settings(
        data_dir=tmp_path / "data",
        public_base_url=BASE,
        clients=(CdsClientConfig(iss=EHR, jwks=_jwks(CLIENT_KEY, "ehr-1"), tenant="hospital-a"),),
        auditors=(
            AuditorIssuerConfig(
                iss=provider.url, jwks={"keys": [jwk]}, algorithms=("RS256",), tenant=tenant
            ),
        ),
        audit_console_issuer=provider.url,
        audit_console_aud=provider.url + "/fhir",
    )
    return TestClient(create_app(settings), base_url=BASE)


def sign_in(c: TestClient) -> Any:
    """The browser's round trip: console → provider's authorize → console callback."""
    login = c.get("/audit/ui/login", follow_redirects=False)
    assert login.status_code == 302, login.text
    authorize = httpx.get(login.headers["location"], follow_redirects=False)
    assert authorize.status_code == 302, authorize.text
    back = urlsplit(authorize.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return c.get(f"{back.path}?{back.query}", follow_redirects=False)


def _hook(c: TestClient, prefetch: dict[str, Any], instance: str) -> None:
    """A signed CDS call from hospital-a's EHR (prefetch only)."""
    url = "/cds-services/ascvd-risk"
    body = hook_request(prefetch["patient"]["id"], prefetch, hookInstance=instance)
    token = client_token(BASE + url)
    response = c.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def _reads(c: TestClient) -> list[dict[str, Any]]:
    log: ChainedAuditLog = c.app.state.runtime.audit  # type: ignore[attr-defined]
    return [r.body for r in log.records(kind="auditor-read")]


def test_pages_need_a_signed_in_auditor(tmp_path: Any, provider: Provider) -> None:
    """Without a session every page is the sign-in page (401), never data."""
    with _console(tmp_path, provider) as c:
        for path in ("/audit/ui", "/audit/ui/records/1", "/audit/ui/stats", "/audit/ui/chain"):
            page = c.get(path)
            assert page.status_code == 401 and "Sign in with your organisation" in page.text
        assert _reads(c) == []


def test_sign_in_uses_pkce_and_keeps_tokens_on_the_server(
    tmp_path: Any, provider: Provider
) -> None:
    """The authorize request carries S256 PKCE, state and nonce; the browser gets only an
    opaque HttpOnly cookie, never a token."""
    with _console(tmp_path, provider) as c:
        login = c.get("/audit/ui/login", follow_redirects=False)
        q = parse_qs(urlsplit(login.headers["location"]).query)
        assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
        assert q["state"][0] and q["nonce"][0] and q["scope"] == ["openid"]
        done = sign_in(c)
        assert done.status_code == 303 and done.headers["location"] == "/audit/ui"
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie and "Path=/audit/ui" in cookie
        assert "eyJ" not in done.text + cookie  # no JWT reaches the browser
        page = c.get("/audit/ui")
        assert page.status_code == 200
        assert "eyJ" not in page.text
        assert "script-src" not in page.headers["content-security-policy"]
        assert "default-src 'none'" in page.headers["content-security-policy"]


def test_a_replayed_callback_is_refused(tmp_path: Any, provider: Provider) -> None:
    """The pending sign-in is taken once: the same callback a second time signs no one in."""
    with _console(tmp_path, provider) as c:
        login = c.get("/audit/ui/login", follow_redirects=False)
        authorize = httpx.get(login.headers["location"], follow_redirects=False)
        back = urlsplit(authorize.headers["location"])
        assert c.get(f"{back.path}?{back.query}", follow_redirects=False).status_code == 303
        c.cookies.clear()
        again = c.get(f"{back.path}?{back.query}", follow_redirects=False)
        assert again.status_code == 400


def test_records_filter_record_replay_and_exports(
    tmp_path: Any, provider: Provider, demo_bundles: list[dict[str, Any]]
) -> None:
    """An auditor lists, filters, opens and replays a record and downloads the exports;
    every read is an auditor-read record naming the console user."""
    with _console(tmp_path, provider) as c:
        first = prefetch_from_bundle(demo_bundles[0])
        second = prefetch_from_bundle(demo_bundles[1])
        _hook(c, first, "console-1")
        _hook(c, second, "console-2")
        sign_in(c)
        listing = c.get("/audit/ui")
        assert first["patient"]["id"] in listing.text and second["patient"]["id"] in listing.text
        only = c.get("/audit/ui", params={"patient": first["patient"]["id"]})
        assert first["patient"]["id"] in only.text and second["patient"]["id"] not in only.text
        record = c.get("/audit/ui/records/1")
        assert record.status_code == 200 and "Chain position" in record.text
        assert "Twin state, version 1 (content hash matches the record)" in record.text
        csrf = record.text.split('name="csrf" value="')[1].split('"')[0]
        replay = c.post("/audit/ui/records/1/replay", data={"csrf": csrf})
        assert "Outcome: <strong>identical</strong>" in replay.text
        forged = c.post("/audit/ui/records/1/replay", data={"csrf": "forged"})
        assert forged.status_code == 403
        ndjson = c.get("/audit/ui/export.ndjson")
        assert ndjson.headers["content-type"].startswith("application/fhir+ndjson")
        assert json.loads(ndjson.text.splitlines()[0])["resourceType"]
        csv_export = c.get("/audit/ui/export.csv")
        assert csv_export.text.splitlines()[0].startswith("seq,recorded_at,service")
        assert len(csv_export.text.splitlines()) == 3
        stats = c.get("/audit/ui/stats")
        assert stats.status_code == 200 and "<svg" in stats.text
        chain = c.get("/audit/ui/chain")
        assert "intact" in chain.text and "Signer" in chain.text
        pce = c.get("/audit/ui", params={"model": "pce", "version": "no-such-version"})
        assert first["patient"]["id"] not in pce.text
        reads = _reads(c)
    assert {r["action"] for r in reads} >= {
        "query",
        "record",
        "replay",
        "export",
        "stats",
        "verify",
    }
    assert all(r["query"]["console"] is True for r in reads)
    assert {r["auditor"]["iss"] for r in reads} == {provider.url}


def test_a_second_tenants_records_are_invisible(
    tmp_path: Any, demo_bundles: list[dict[str, Any]]
) -> None:
    """An auditor whose token names hospital-b sees none of hospital-a's records."""
    for b_provider in _serve((("role", "auditor"), ("tenant", "hospital-b"))):
        with _console(tmp_path, b_provider) as c:
            pf = prefetch_from_bundle(demo_bundles[0])
            _hook(c, pf, "console-b")
            sign_in(c)
            assert pf["patient"]["id"] not in c.get("/audit/ui").text
            assert c.get("/audit/ui/records/1").status_code == 404
            assert len(c.get("/audit/ui/export.csv").text.splitlines()) == 1


def test_a_token_without_the_auditor_role_is_refused(tmp_path: Any) -> None:
    """A clinician signing in at the console gets 403 and no session."""
    for clinician in _serve((("role", "clinician"),)):
        with _console(tmp_path, clinician) as c:
            assert sign_in(c).status_code == 403
            assert c.get("/audit/ui").status_code == 401


def test_a_stored_twin_that_no_longer_loads_is_named_on_the_record(
    tmp_path: Any, provider: Provider, demo_bundles: list[dict[str, Any]]
) -> None:
    """A twin version altered into an invalid state is shown as not loading, with the field."""
    with _console(tmp_path, provider) as c:
        _hook(c, prefetch_from_bundle(demo_bundles[0]), "console-1")
        twin_db = tmp_path / "data" / "twins.sqlite"  # Settings.twin_db under _console's data_dir
        with contextlib.closing(sqlite3.connect(twin_db)) as conn, conn:
            conn.execute(
                "UPDATE twin_versions "
                "SET twin_json = json_set(twin_json, '$.demographics.deceased', 'no')"
            )
        sign_in(c)
        record = c.get("/audit/ui/records/1")
        assert record.status_code == 200
        assert "Twin state, version 1 (the stored state DOES NOT LOAD: stored twin state" in (
            record.text
        )
        assert "demographics.deceased: Input should be a valid boolean" in record.text
