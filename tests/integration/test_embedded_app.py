"""The clinician app inside the EHR's chart, in Debian's Chromium: the simulated EHR
opens it in an iframe.

The service lets one EHR page origin frame the app: ``http://localhost:<ehr port>``. The
app itself is on ``http://127.0.0.1:<port>``, another site, so inside that frame the
session cookie is a third-party cookie: only ``SameSite=None; Secure; Partitioned`` is
sent there. The same chart opened from ``http://127.0.0.1:<ehr port>`` (the EHR's FHIR
origin, not in the allowlist) is refused by the app's CSP. The EHR's access tokens
live a few seconds, so the session must be renewed with the refresh token to go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ehr_sim.demo import APP_CLIENT_ID, RunningProduct, running_product
from ehr_sim.servers import free_port
from smart_app.launch import COOKIE
from smart_app.sessions import SessionStore
from tests.integration.test_smart_app import CHROMIUM_ARGS, chromium  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

#: The EHR's access tokens live this long: the test outlives several of them.
TOKEN_LIFETIME_S = 6


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProduct]:
    work: Path = tmp_path_factory.mktemp("embedded")
    ehr_port = free_port()
    servers = [
        {
            "iss": f"http://127.0.0.1:{ehr_port}/fhir",
            "client_id": APP_CLIENT_ID,
            "frame_origins": [f"http://localhost:{ehr_port}"],
        }
    ]
    with running_product(
        work,
        patients=3,
        seed=11,
        port=free_port(),
        ehr_port=ehr_port,
        ehr_token_lifetime_s=TOKEN_LIFETIME_S,
        service_env={
            "TWIN_CDS_APP_EMBED_IN_EHR": "true",
            "TWIN_CDS_SMART_SERVERS": json.dumps(servers),
            "TWIN_CDS_FHIR_BUDGET_MS": "5000",
        },
    ) as running:
        yield running


def _ehr_port(product: RunningProduct) -> int:
    return int(product.ehr.base_url.rsplit(":", 1)[1])


def _session(product: RunningProduct, cookie_value: str) -> dict[str, Any]:
    store = SessionStore.sqlite(
        product.service.log_path.parent / "service-data" / "app_sessions.sqlite"
    )
    try:
        session = store.get(cookie_value, "active")
    finally:
        store.close()
    assert session is not None
    return session


def test_the_ehr_frames_the_app_and_the_session_is_renewed_past_the_token_lifetime(
    product: RunningProduct,
    chromium: Any,  # noqa: F811
) -> None:
    """From the allowed EHR origin (another site) the app loads in the chart's frame with
    a partitioned cookie, and keeps working after its first access tokens expired."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    patient = product.patients[0]
    page.goto(f"http://localhost:{_ehr_port(product)}/ehr/patient/{patient}")
    page.click("#launch-app-embedded")
    frame = page.frame_locator("#app-frame")
    expect(frame.get_by_test_id("patient-name")).not_to_contain_text("Loading")
    (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
    assert cookie["sameSite"] == "None" and cookie["secure"] and cookie["httpOnly"]
    first = _session(product, cookie["value"])
    assert first["refresh_token"]

    app_frame = next(f for f in page.frames if f.url.startswith(product.service.base_url))
    # Outlive the first access token (and its successor), then use the app again.
    for _ in range(2):
        page.wait_for_timeout(1000 * (TOKEN_LIFETIME_S + 1))
        status = app_frame.evaluate(
            "async () => (await fetch('/app/api/twin', {credentials: 'same-origin'})).status"
        )
        assert status == 200
    renewed = _session(product, cookie["value"])
    assert renewed["access_token"] != first["access_token"]
    assert renewed["refresh_token"] != first["refresh_token"]  # rotated
    assert renewed["access_expires_at"] > first["access_expires_at"] + TOKEN_LIFETIME_S
    context.close()


def test_a_chart_on_another_origin_cannot_frame_the_app(
    product: RunningProduct,
    chromium: Any,  # noqa: F811
) -> None:
    """The same chart from an origin not in the allowlist: the app refuses to be framed
    (CSP frame-ancestors), so nothing of the app shows inside it."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    refusals: list[str] = []
    page.on("console", lambda m: refusals.append(m.text) if "frame-ancestors" in m.text else None)
    patient = product.patients[0]
    page.goto(f"http://127.0.0.1:{_ehr_port(product)}/ehr/patient/{patient}")
    with page.expect_console_message(lambda m: "frame-ancestors" in m.text):
        page.click("#launch-app-embedded")
    assert any(product.service.base_url in r for r in refusals), refusals
    assert f"http://localhost:{_ehr_port(product)}" in refusals[0]
    app_frames = [f for f in page.frames if f.url.startswith(product.service.base_url)]
    for f in app_frames:
        assert f.locator("[data-testid=patient-name]").count() == 0
    context.close()
