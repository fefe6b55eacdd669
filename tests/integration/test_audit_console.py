"""The auditor console in Debian's Chromium: the service and the EHR simulator (the OpenID
Connect provider) under uvicorn on 127.0.0.1, driven headless by Playwright."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import expect

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.http.auth import CdsClientConfig
from cds_service.settings import Settings
from ehr_sim.authorization import public_jwk
from ehr_sim.patients import generate_patients
from ehr_sim.servers import free_port
from ehr_sim.simulator import SimulatedClient, SimulatorConfig, create_simulator_app
from tests.audit.test_api import CLIENT_KEY, EHR, _jwks, client_token
from tests.conftest import hook_request, prefetch_from_bundle
from tests.integration.test_smart_app import CHROMIUM_ARGS, _axe_violations
from twin_cds.app import create_app

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.")


def _serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(400):
        if server.started:
            return server
        time.sleep(0.05)
    raise RuntimeError("server did not start")


@dataclass(frozen=True)
class Running:
    service: str
    patients: tuple[str, str]
    #: The same trail served to a provider whose auditors belong to hospital-b.
    service_b: str


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data = tmp_path_factory.mktemp("console") / "data"
    servers = []
    urls = []
    # Two service processes on one trail (SQLite, WAL), each with its own provider: one
    # signs in hospital-a's auditors, the other hospital-b's.
    for tenant in ("hospital-a", "hospital-b"):
        sim_port, service_port = free_port(), free_port()
        sim, service = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{service_port}"
        servers.append(_serve(_provider_app(sim, service, tenant), sim_port))
        settings = Settings(
            data_dir=data,
            public_base_url=service,
            clients=(
                CdsClientConfig(iss=EHR, jwks=_jwks(CLIENT_KEY, "ehr-1"), tenant="hospital-a"),
            ),
            auditors=(
                AuditorIssuerConfig(
                    iss=sim,
                    jwks={"keys": [{**public_jwk(KEY), "use": "sig"}]},
                    algorithms=("RS256",),
                ),
            ),
            audit_console_issuer=sim,
            audit_console_aud=sim + "/fhir",
        )
        servers.append(_serve(create_app(settings), service_port))
        urls.append(service)
    service = urls[0]
    ids = []
    for n, bundle in enumerate(generate_patients(2, seed=7)):
        pf = prefetch_from_bundle(bundle)
        url = f"{service}/cds-services/ascvd-risk"
        body = hook_request(pf["patient"]["id"], pf, hookInstance=f"browser-{n}")
        token = client_token(url)
        assert (
            httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        ids.append(pf["patient"]["id"])
    yield Running(service, (ids[0], ids[1]), urls[1])
    for server in servers:
        server.should_exit = True


def _provider_app(sim: str, service: str, tenant: str) -> Any:
    return create_simulator_app(
        SimulatorConfig(
            fhir_upstream="http://127.0.0.1:9/fhir",  # not used at sign-in
            public_base_url=sim,
            clients=(
                SimulatedClient(
                    client_id="twin-cds-audit-console",
                    redirect_uris=(f"{service}/audit/ui/callback",),
                    launch_url=f"{service}/audit/ui",
                    id_token_claims=(("role", "auditor"), ("tenant", tenant)),
                ),
            ),
        ),
        signing_key=KEY,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("TWIN_CDS_REQUIRE_BROWSER"):
            pytest.fail("Debian chromium is not installed at /usr/bin/chromium")
        pytest.skip("Debian chromium is not installed (scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _signed_in(
    browser: Any, running: Running, service: str | None = None
) -> tuple[Any, Any, list[str]]:
    service = service or running.service
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    bodies: list[str] = []

    def keep(response: Any) -> None:
        if response.url.startswith(service) and response.status < 300:
            try:
                bodies.append(response.text())
            except Exception:
                return

    page.on("response", keep)
    page.goto(f"{service}/audit/ui/login")
    page.wait_for_url(f"{service}/audit/ui")
    return context, page, bodies


def test_an_auditor_signs_in_filters_reads_replays_and_exports(
    browser: Any, running: Running
) -> None:
    """Sign-in through the provider, filtering, a record, replay from the page, statistics
    plots, an export download; no token ever reaches the browser."""
    context, page, bodies = _signed_in(browser, running)
    first, second = running.patients
    expect(page.get_by_role("heading", name="Recommendations")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)

    page.get_by_label("Patient").fill(first)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody")).to_contain_text(first)
    expect(page.locator("tbody")).not_to_contain_text(second)

    page.locator("tbody a").first.click()
    expect(page.get_by_role("heading", name="Chain position")).to_be_visible()
    page.get_by_role("button", name="Replay this recommendation").click()
    expect(page.locator(".outcome")).to_contain_text("identical")

    page.get_by_role("link", name="Statistics").click()
    expect(page.locator("figure svg").first).to_be_visible()
    expect(page.locator("figure svg rect.acc, figure svg rect.none").first).to_be_attached()

    page.get_by_role("link", name="Recommendations").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("seq,recorded_at,service") and len(lines) == 3

    cookies = context.cookies()
    assert [c["name"] for c in cookies if c["domain"] == "127.0.0.1"] == ["twin_audit_console"]
    assert not any(JWT.search(c["value"]) for c in cookies)
    assert not any(JWT.search(b) for b in bodies)
    context.close()


@pytest.mark.parametrize(
    "path", ["/audit/ui", "/audit/ui/records/1", "/audit/ui/stats", "/audit/ui/chain"]
)
def test_console_pages_pass_an_accessibility_audit(
    browser: Any, running: Running, path: str
) -> None:
    """axe-core over each console page: no violations."""
    context, page, _ = _signed_in(browser, running)
    page.goto(running.service + path)
    page.locator("main h1").wait_for()
    from axe_playwright_python.sync_playwright import Axe

    # axe ran (under the console's CSP) when it reports rules that passed.
    assert Axe().run(page).response["passes"]
    assert _axe_violations(page) == []
    context.close()


def test_a_second_tenants_records_are_invisible(browser: Any, running: Running) -> None:
    """A hospital-b auditor, on the same trail, sees no hospital-a record, list or page."""
    context, page, _ = _signed_in(browser, running, running.service_b)
    expect(page.get_by_role("heading", name="Recommendations")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(0)
    page.goto(f"{running.service_b}/audit/ui/records/1")
    expect(page.get_by_role("heading", name="No such record")).to_be_visible()
    context.close()
