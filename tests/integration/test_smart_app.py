"""The clinician app for real: a FHIR server (sekmet), the service under uvicorn, the EHR
launch simulator, and Debian's Chromium driven headless by Playwright.

The EHR signs its hook calls (authentication on, as in production). Every launch goes
through the simulator's authorize and token endpoints; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from ehr_sim.demo import APP_CLIENT_ID, RunningProduct, running_product
from ehr_sim.servers import free_port
from smart_app.launch import COOKIE
from smart_app.sessions import SessionStore
from tests.support.keys import es384, hook_claims

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TWIN_CDS_TEST_ARTIFACTS", REPO / "test-artifacts")) / "smart-app"
CHROMIUM = Path("/usr/bin/chromium")
# Flags for a closed network (no Google lookups, no component updates) and root in CI.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = es384("simulator")
JWT_PATTERN = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.")
UNREDACTED = re.compile(
    r"/(?:callback|authorize|launch)\?[^ \"]*?\b(?:code|state|launch|nonce|code_challenge)="
    r"(?!\[redacted\])"
)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProduct]:
    work: Path = tmp_path_factory.mktemp("smart")
    key_file = work / "ehr-cds-key.pem"
    key_file.write_bytes(KEY.pem())
    with running_product(
        work,
        patients=6,
        seed=11,
        port=free_port(),
        cds_key_file=key_file,
        cds_jwks=KEY.jwks(),
        # A loaded CI machine can take longer than the 400 ms default to read a patient;
        # a partial read is a (correct) different twin, which is not what these tests are
        # about (tests/integration/test_faults.py tests the budget).
        service_env={"TWIN_CDS_FHIR_BUDGET_MS": "5000"},
    ) as running:
        yield running


def _chart(product: RunningProduct, patient: str) -> str:
    response = httpx.get(f"{product.ehr.base_url}/ehr/patient/{patient}", timeout=60)
    assert response.status_code == 200
    return response.text


#: An ascvd-risk card that shows the PCE number: the risk tier card, or a benefit group
#: card that states the risk it did not need ("whatever the 10-year risk (6.4%)").
PCE_SUMMARY = r"<h3>(10-year ASCVD risk \d|Diabetes at \d+: .*\(\d+\.\d%\))"


@pytest.fixture(scope="module")
def risk_patient(product: RunningProduct) -> str:
    """A generated patient whose PREVENT and PCE cards both have numbers, and whose card
    offers the statin what-if (not on a statin, LDL on record)."""
    for pid in product.patients:
        chart = _chart(product, pid)
        if (
            "10-year cardiovascular risk" in chart
            and re.search(PCE_SUMMARY, chart)
            and "moderate-intensity statin:" in chart
        ):
            return pid
    raise AssertionError("no generated patient has computed PREVENT and PCE cards")


# --- the launch without a browser: what the EHR's authorization server refuses ---------


def _launch_id(product: RunningProduct, patient: str) -> str:
    """Ask the EHR for a launch of our app for this patient; return the launch id."""
    response = httpx.post(
        f"{product.ehr.base_url}/ehr/launch", data={"patient": patient}, timeout=30
    )
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["iss"] == [product.ehr_fhir_base]
    return query["launch"][0]


def _authorize(product: RunningProduct, **params: str | None) -> httpx.Response:
    return httpx.get(
        f"{product.ehr.base_url}/authorize",
        params={k: v for k, v in params.items() if v is not None},
        timeout=30,
    )


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _code(product: RunningProduct, patient: str, verifier: str, **override: str | None) -> str:
    """A client of our own through the real authorize endpoint; returns the code."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": APP_CLIENT_ID,
        "redirect_uri": f"{product.service.base_url}/app/callback",
        "scope": "launch openid fhirUser patient/Patient.rs patient/Observation.rs",
        "state": secrets.token_urlsafe(32),
        "aud": product.ehr_fhir_base,
        "code_challenge": _s256(verifier),
        "code_challenge_method": "S256",
        "launch": _launch_id(product, patient),
    }
    params.update(override)
    response = _authorize(product, **params)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def _exchange(product: RunningProduct, code: str, verifier: str, **override: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": f"{product.service.base_url}/app/callback",
        "client_id": APP_CLIENT_ID,
        "code_verifier": verifier,
        **override,
    }
    return httpx.post(f"{product.ehr.base_url}/token", data=form, timeout=30)


def test_a_replayed_code_is_refused_and_revokes_its_token(
    product: RunningProduct, risk_patient: str
) -> None:
    """A code exchanged twice is invalid_grant, and the token it bought stops working."""
    verifier = secrets.token_urlsafe(48)
    code = _code(product, risk_patient, verifier)
    first = _exchange(product, code, verifier)
    assert first.status_code == 200
    token = first.json()["access_token"]
    fhir = f"{product.ehr_fhir_base}/Patient/{risk_patient}"
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(fhir, headers=headers, timeout=30).status_code == 200
    replay = _exchange(product, code, verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert httpx.get(fhir, headers=headers, timeout=30).status_code == 401


def test_a_wrong_code_verifier_is_refused(product: RunningProduct, risk_patient: str) -> None:
    """A code exchanged with another PKCE verifier than its challenge's is invalid_grant."""
    verifier = secrets.token_urlsafe(48)
    code = _code(product, risk_patient, verifier)
    response = _exchange(product, code, secrets.token_urlsafe(48))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_wrong_redirect_uri_is_refused(product: RunningProduct, risk_patient: str) -> None:
    """At authorize: an error page, never a redirect to the unregistered URI; at token:
    a redirect_uri other than the code's is invalid_grant."""
    verifier = secrets.token_urlsafe(48)
    evil = "https://attacker.example/callback"
    response = _authorize(
        product,
        response_type="code",
        client_id=APP_CLIENT_ID,
        redirect_uri=evil,
        scope="launch openid",
        state="s" * 43,
        aud=product.ehr_fhir_base,
        code_challenge=_s256(verifier),
        code_challenge_method="S256",
        launch=_launch_id(product, risk_patient),
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    code = _code(product, risk_patient, verifier)
    at_token = _exchange(product, code, verifier, redirect_uri=evil)
    assert at_token.status_code == 400


@pytest.mark.parametrize(
    ("fault", "override"),
    [
        ("no PKCE", {"code_challenge": None, "code_challenge_method": None}),
        ("plain PKCE", {"code_challenge_method": "plain"}),
    ],
)
def test_authorize_without_pkce_s256_is_refused(
    product: RunningProduct, risk_patient: str, fault: str, override: dict[str, str | None]
) -> None:
    """Authorize without PKCE or with plain PKCE redirects back with invalid_request, no code."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": APP_CLIENT_ID,
        "redirect_uri": f"{product.service.base_url}/app/callback",
        "scope": "launch openid",
        "state": "s" * 43,
        "aud": product.ehr_fhir_base,
        "code_challenge": _s256(secrets.token_urlsafe(48)),
        "code_challenge_method": "S256",
        "launch": _launch_id(product, risk_patient),
        **override,
    }
    response = _authorize(product, **params)
    assert response.status_code == 302, fault
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert "code" not in query


def test_a_callback_with_the_wrong_state_is_refused_by_the_app(
    product: RunningProduct, risk_patient: str
) -> None:
    """The real app and the real EHR: a code delivered with another state is refused and
    the launch is spent (the right state afterwards is refused too)."""
    with httpx.Client(timeout=30) as browser:
        launch = browser.get(
            f"{product.service.base_url}/app/launch",
            params={"iss": product.ehr_fhir_base, "launch": _launch_id(product, risk_patient)},
        )
        assert launch.status_code == 302
        back = browser.get(launch.headers["location"])
        assert back.status_code == 302
        query = parse_qs(urlsplit(back.headers["location"]).query)
        callback = f"{product.service.base_url}/app/callback"
        wrong = browser.get(callback, params={"code": query["code"][0], "state": "forged"})
        assert wrong.status_code == 400
        right = browser.get(callback, params={"code": query["code"][0], "state": query["state"][0]})
        assert right.status_code == 400
        assert browser.get(f"{product.service.base_url}/app/api/session").status_code == 401


# --- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("TWIN_CDS_REQUIRE_BROWSER"):
            pytest.fail("Debian chromium is not installed at /usr/bin/chromium")
        pytest.skip("Debian chromium is not installed (scripts/test.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # The browser under test is Debian's: the same version its binary reports.
        debian = subprocess.run(  # noqa: S603 - a fixed system binary
            [str(CHROMIUM), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert browser.version in debian, (browser.version, debian)
        yield browser
        browser.close()


class Visit:
    """A browser context that remembers every response the app's origin sent it."""

    def __init__(self, chromium: Any, product: RunningProduct) -> None:
        self.context = chromium.new_context(viewport={"width": 1366, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.bodies: list[str] = []
        self.errors: list[str] = []
        self.product = product
        self.page.on("response", self._response)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def _response(self, response: Any) -> None:
        if response.url.startswith(self.product.service.base_url):
            try:
                self.bodies.append(response.text())
            except Exception:
                self.bodies.append("")
            self.bodies.append(json.dumps(response.headers))

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def session_token(self, work_dir: Path) -> str:
        """The EHR's access token the app holds, read as the server reads it (with the
        browser's cookie), so the test can look for it everywhere else."""
        cookies = [c for c in self.context.cookies() if c["name"] == COOKIE]
        assert len(cookies) == 1
        store = SessionStore.sqlite(work_dir / "service-data" / "app_sessions.sqlite")
        session = store.get(cookies[0]["value"], "active")
        assert session is not None
        token: str = session["access_token"]
        return token


def _hook_records(product: RunningProduct, patient: str) -> list[dict[str, Any]]:
    """The service's audit records for a patient (service, twin, data problems): what a
    failing assertion about twin versions needs to say."""
    db = sqlite3.connect(product.service.log_path.parent / "service-data" / "audit.sqlite")
    try:
        rows = db.execute(
            "SELECT body FROM audit_chain WHERE kind = 'hook' AND patient_id = ? ORDER BY seq",
            (patient,),
        ).fetchall()
    finally:
        db.close()
    return [
        {k: json.loads(b)[k] for k in ("service", "twin", "dataProblems", "durationMs")}
        for (b,) in rows
    ]


def _text(page: Any, test_id: str) -> str:
    return str(page.get_by_test_id(test_id).first.inner_text()).strip()


def _percentages(text: str) -> list[str]:
    return re.findall(r"\d+\.\d%", text)


@dataclass
class Dashboard:
    """The risk patient's dashboard, opened from the PREVENT card's SMART link in the EHR's
    chart, with the two patient-view cards the chart showed."""

    visit: Visit
    prevent_summary: str
    prevent_detail: str
    prevent_context: dict[str, Any]
    pce_summary: str
    pce_context: dict[str, Any]

    @property
    def page(self) -> Any:
        return self.visit.page


def _open_from_the_card(product: RunningProduct, patient: str, chromium: Any) -> Dashboard:
    """EHR chart -> the PREVENT card's SMART link -> authorize -> the loaded dashboard."""
    visit = Visit(chromium, product)
    page = visit.page
    page.goto(f"{product.ehr.base_url}/ehr/patient/{patient}")
    cards = page.locator("article.card")
    prevent_card = cards.filter(
        has=page.locator("h3", has_text="10-year cardiovascular risk")
    ).first
    pce_card = cards.filter(has=page.locator("h3", has_text=re.compile(PCE_SUMMARY[4:]))).first
    dashboard = Dashboard(
        visit=visit,
        prevent_summary=prevent_card.locator("h3").inner_text(),
        prevent_detail=prevent_card.inner_text(),
        prevent_context=json.loads(
            prevent_card.locator("input[name=app_context]").first.get_attribute("value")
        ),
        pce_summary=pce_card.locator("h3").inner_text(),
        pce_context=json.loads(
            pce_card.locator("input[name=app_context]").first.get_attribute("value")
        ),
    )
    prevent_card.locator("button.card-launch").first.click()
    page.wait_for_url(f"{product.service.base_url}/app/")
    page.get_by_test_id("risk-prevent-risk_10y_cvd").first.wait_for()
    page.get_by_test_id("waterfall-prevent").first.wait_for()
    return dashboard


@pytest.fixture(scope="module")
def dashboard(product: RunningProduct, risk_patient: str, chromium: Any) -> Iterator[Dashboard]:
    """One launch from the card, read by the tests that do not change the page."""
    opened = _open_from_the_card(product, risk_patient, chromium)
    opened.visit.screenshot("dashboard-risk")
    yield opened
    opened.visit.context.close()


def test_both_patient_view_cards_name_one_twin_version(
    product: RunningProduct, risk_patient: str, dashboard: Dashboard
) -> None:
    """Both patient-view services read one query, so the same data made one twin version."""
    assert dashboard.pce_context["twinVersion"] == dashboard.prevent_context["twinVersion"], (
        _hook_records(product, risk_patient)
    )


def test_the_app_opens_on_the_twin_version_the_card_named(dashboard: Dashboard) -> None:
    """The app names the card's twin version and, reading the same query, no newer data."""
    expect(dashboard.page.get_by_test_id("twin-version").first).to_contain_text(
        f"twin version {dashboard.prevent_context['twinVersion']}"
    )
    assert dashboard.page.locator("#twin-note").is_hidden()


def test_the_app_shows_the_cards_numbers(dashboard: Dashboard) -> None:
    """The PREVENT and PCE risks on the dashboard are the ones the cards' summaries gave."""
    page = dashboard.page
    cvd, ascvd, hf = _percentages(dashboard.prevent_summary)[:3]
    assert _text(page, "risk-prevent-risk_10y_cvd") == cvd
    assert _text(page, "risk-prevent-risk_10y_ascvd") == ascvd
    assert _text(page, "risk-prevent-risk_10y_hf") == hf
    assert _text(page, "risk-pce-risk_10y_ascvd") == _percentages(dashboard.pce_summary)[0]


def test_the_ehrs_smart_style_is_applied(dashboard: Dashboard) -> None:
    """The EHR's SMART style sets the app's accent (its readable highlight colour)."""
    accent = dashboard.page.evaluate(
        "() => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()"
    )
    assert accent == "#1f5f99"


def test_the_banner_names_the_launched_patient(
    product: RunningProduct, risk_patient: str, dashboard: Dashboard
) -> None:
    """The banner shows the name the EHR's FHIR server holds for the launched patient."""
    record = httpx.get(f"{product.fhir.base_url}/Patient/{risk_patient}", timeout=30).json()
    name = record["name"][0]
    expect(dashboard.page.get_by_test_id("patient-name").first).to_contain_text(name["family"])


def test_the_statin_what_if_moves_to_the_cards_treatment_line(
    product: RunningProduct, risk_patient: str, chromium: Any
) -> None:
    """A moderate-intensity statin redraws the risk to the card's 'statin: before → after'."""
    opened = _open_from_the_card(product, risk_patient, chromium)
    page = opened.page
    line = re.search(r"moderate-intensity statin: ([\d.]+%) → ([\d.]+%)", opened.prevent_detail)
    assert line is not None, opened.prevent_detail
    expect(page.get_by_test_id("whatif-risk").first).to_have_text(line.group(1))
    chart_before = page.get_by_test_id("whatif-chart").first.inner_html()
    page.select_option("#statin", "moderate")
    expect(page.get_by_test_id("whatif-risk").first).to_have_text(line.group(2))
    assert page.get_by_test_id("whatif-chart").first.inner_html() != chart_before
    opened.visit.context.close()


def test_the_history_holds_the_calls_the_chart_made(dashboard: Dashboard) -> None:
    """The recommendation history lists the PREVENT call the EHR's chart just made."""
    history = dashboard.page.get_by_test_id("history").first
    history.locator("li").first.wait_for()
    assert "PREVENT" in history.inner_text()


def test_every_form_control_has_a_label(dashboard: Dashboard) -> None:
    """No visible input, select or textarea without a label or an aria-label."""
    unlabeled = dashboard.page.evaluate(
        "() => [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.ariaLabel)"
        ".map(e => e.id || e.name)"
    )
    assert unlabeled == []


def test_the_keyboard_reaches_the_what_if(dashboard: Dashboard) -> None:
    """Tabbing from the top of the page reaches the statin and blood-pressure controls."""
    page = dashboard.page
    page.locator("body").focus()
    reached = set()
    for _ in range(80):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement && document.activeElement.id"))
        if {"statin", "sbp-target", "dose-mg"} <= reached:
            break
    assert {"statin", "sbp-target"} <= reached


def test_no_token_reaches_the_browser(product: RunningProduct, dashboard: Dashboard) -> None:
    """The EHR's access token is in no response the browser got, and no JWT is either."""
    token = dashboard.visit.session_token(product.service.log_path.parent)
    seen = "\n".join(dashboard.visit.bodies)
    assert token not in seen
    assert JWT_PATTERN.search(seen) is None


def test_the_only_cookie_is_the_opaque_http_only_session(
    product: RunningProduct, dashboard: Dashboard
) -> None:
    """The app sets one cookie, the session id: HttpOnly, SameSite=Lax, never the token."""
    token = dashboard.visit.session_token(product.service.log_path.parent)
    cookies = dashboard.visit.context.cookies()
    assert {c["name"] for c in cookies if "127.0.0.1" in c["domain"]} <= {COOKIE}
    assert all(token not in c["value"] for c in cookies)
    session_cookie = next(c for c in cookies if c["name"] == COOKIE)
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Lax"


def test_no_token_or_launch_secret_reaches_the_logs(
    product: RunningProduct, dashboard: Dashboard
) -> None:
    """No log holds a token; access logs redact codes, states and launch ids in URLs."""
    token = dashboard.visit.session_token(product.service.log_path.parent)
    for log in (product.service.log_path, product.ehr.log_path):
        text = log.read_text(errors="replace")
        assert token not in text
        assert JWT_PATTERN.search(text) is None
        assert UNREDACTED.search(text) is None, UNREDACTED.search(text)


def test_the_dashboard_logs_no_console_error(dashboard: Dashboard) -> None:
    """Loading the dashboard from the card logs no error in the browser's console."""
    assert dashboard.visit.errors == []


def _ehr_jwt(product: RunningProduct, url: str) -> str:
    """The simulated EHR's CDS Hooks JWT for one call to ``url``."""
    return KEY.sign(hook_claims(product.ehr.base_url, url, lifetime_s=60))


def _hook_body(product: RunningProduct, hook: str, patient: str, **context: Any) -> dict[str, Any]:
    """A hook call whose data the service fetches from the FHIR server (sekmet wants no
    token; the service still gets one, as from an EHR)."""
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": product.fhir.base_url,
        "fhirAuthorization": {
            "access_token": "sekmet-needs-none",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.rs",
            "subject": "twin-cds",
        },
        "context": {"userId": "Practitioner/1", "patientId": patient, **context},
    }


def _signed_post(product: RunningProduct, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST to the service as the simulated EHR (its JWT, aud = the exact URL)."""
    url = f"{product.service.base_url}{path}"
    token = _ehr_jwt(product, url)
    return httpx.post(url, json=body, timeout=60, headers={"Authorization": f"Bearer {token}"})


def _order_select(
    product: RunningProduct, patient: str, dose: float, tau: float, inf: float
) -> str:
    """The vancomycin card for a drafted order, as the EHR would get it (signed call)."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "11124",
                    "display": "vancomycin",
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "dosageInstruction": [
            {
                "timing": {
                    "repeat": {
                        "frequency": 1,
                        "period": tau,
                        "periodUnit": "h",
                        "duration": inf,
                        "durationUnit": "h",
                    }
                },
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": dose,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    body = _hook_body(
        product,
        "order-select",
        patient,
        selections=["MedicationRequest/draft-1"],
        draftOrders={
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        },
    )
    response = _signed_post(product, "/cds-services/vancomycin-dosing", body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert len(cards) == 1
    return str(cards[0]["summary"])


def test_the_dose_simulator_redraws_the_curve_and_matches_the_dosing_card(
    product: RunningProduct, chromium: Any
) -> None:
    """EHR launch for the vancomycin inpatient: a regimen change redraws the curve, and
    the app's AUC24 and target probability for a regimen are the dosing card's."""
    visit = Visit(chromium, product)
    page = visit.page
    page.goto(f"{product.ehr.base_url}/ehr/patient/{product.vancomycin_patient}")
    page.locator("#launch-app").click()
    page.wait_for_url(f"{product.service.base_url}/app/")
    page.get_by_test_id("conc-median").first.wait_for()
    page.get_by_test_id("sim-auc24").first.wait_for()
    curve_before = page.get_by_test_id("conc-median").first.get_attribute("d")
    auc_before = _text(page, "sim-auc24")

    # Infusion first: 1500 mg over the current 1 h would be refused (faster than 1 g/h).
    page.fill("#infusion-h", "1.5")
    page.select_option("#interval-h", "12")
    page.fill("#dose-mg", "1500")
    page.locator("#simulate").click()
    # Redrawn: a new number (not the "—" shown while waiting) and a band drawn again.
    page.wait_for_function(
        """(before) => {
            const auc = document.querySelector('[data-testid="sim-auc24"]').textContent.trim();
            const band = document.querySelector('[data-testid="conc-band"]');
            return /^\\d+$/.test(auc) && auc !== before && band.getAttribute("points") !== "";
        }""",
        arg=auc_before,
    )
    assert page.get_by_test_id("conc-median").first.get_attribute("d") != curve_before
    band = page.get_by_test_id("conc-band").first.get_attribute("points") or ""
    assert len(band.split()) > 100  # the 90% band: upper and lower edges, ~240 points each
    visit.screenshot("dashboard-dose-simulator")

    summary = _order_select(product, product.vancomycin_patient, 1500, 12, 1.5)
    match = re.search(r"AUC24 (\d+), (\d+%) in", summary)
    assert match is not None, summary
    assert _text(page, "sim-auc24") == match.group(1)
    assert _text(page, "sim-pta") == match.group(2)
    assert visit.errors == []
    visit.context.close()


def test_standalone_launch_through_the_patient_picker(
    product: RunningProduct, chromium: Any
) -> None:
    """Standalone launch: the app sends the clinician to the EHR's patient picker."""
    visit = Visit(chromium, product)
    page = visit.page
    page.goto(f"{product.service.base_url}/app/launch")
    page.locator(f"input[value='{product.vancomycin_patient}']").check()
    page.locator("#pick-patient").click()
    page.wait_for_url(f"{product.service.base_url}/app/")
    expect(page.get_by_test_id("patient-name").first).to_contain_text("Vanko")
    visit.context.close()


def test_the_app_refuses_a_launch_from_an_unconfigured_ehr(product: RunningProduct) -> None:
    """A launch whose iss is not an EHR the app is configured for is a 400."""
    response = httpx.get(
        f"{product.service.base_url}/app/launch?"
        + urlencode({"iss": "http://127.0.0.1:9/fhir", "launch": "x"}),
        timeout=30,
    )
    assert response.status_code == 400


def test_a_replayed_app_code_ends_the_apps_session(
    product: RunningProduct, risk_patient: str
) -> None:
    """Someone replays the code the app already exchanged: the EHR revokes the token it
    bought, and the app, finding its token refused, ends the session (401, relaunch)."""
    with httpx.Client(timeout=30) as browser:
        launch = browser.get(
            f"{product.service.base_url}/app/launch",
            params={"iss": product.ehr_fhir_base, "launch": _launch_id(product, risk_patient)},
        )
        back = browser.get(launch.headers["location"])
        query = parse_qs(urlsplit(back.headers["location"]).query)
        signed_in = browser.get(
            f"{product.service.base_url}/app/callback",
            params={"code": query["code"][0], "state": query["state"][0]},
        )
        assert signed_in.status_code == 303
        replay = _exchange(product, query["code"][0], secrets.token_urlsafe(48))
        assert replay.status_code == 400
        twin = browser.get(f"{product.service.base_url}/app/api/twin")
        assert twin.status_code == 401
        assert "launch the app again" in twin.text
        assert browser.get(f"{product.service.base_url}/app/api/session").status_code == 401


def test_the_banner_is_left_to_an_ehr_that_shows_its_own(
    product: RunningProduct, chromium: Any
) -> None:
    """need_patient_banner false (the EHR frames the app under its own banner): the app
    hides its banner. The EHR's answer is altered in flight, as such an EHR would send it."""
    visit = Visit(chromium, product)
    page = visit.page

    def no_banner(route: Any) -> None:
        response = route.fetch()
        body = {**response.json(), "need_patient_banner": False}
        route.fulfill(response=response, json=body)

    page.route("**/app/api/session", no_banner)
    page.goto(f"{product.ehr.base_url}/ehr/patient/{product.vancomycin_patient}")
    page.locator("#launch-app").click()
    page.wait_for_url(f"{product.service.base_url}/app/")
    page.get_by_test_id("sim-auc24").first.wait_for()
    expect(page.get_by_test_id("patient-banner").first).to_be_hidden()
    visit.context.close()


def _signed_in(browser: httpx.Client, product: RunningProduct, patient: str) -> None:
    """An EHR launch as a browser makes it (redirects followed with the cookie jar)."""
    response = browser.post(
        f"{product.ehr.base_url}/ehr/launch", data={"patient": patient}, follow_redirects=True
    )
    assert urlsplit(str(response.url)).path == "/app/", response.url


# Each refusal names the field or the rule it broke. The bounds are the simulator's
# request model's: a dose up to 4 g, a loading dose up to 3 g (Rybak 2020), an interval
# from 4 h, an infusion no faster than 1 g/h (vancomycin label: 10 mg/min).
@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(
            {"dose_mg": 1000, "interval_h": 12, "infusion_h": 12},
            ["the infusion must end before the next dose starts"],
            id="infusion-as-long-as-the-interval",
        ),
        pytest.param(
            {"dose_mg": 2000, "interval_h": 12, "infusion_h": 1},
            ["infusion faster than 1000 mg/h"],
            id="faster-than-1-g-per-hour",
        ),
        pytest.param(
            {"dose_mg": 1000, "interval_h": 12, "infusion_h": 1, "loading_dose_mg": 750},
            ["a loading dose is larger than the maintenance dose"],
            id="loading-below-maintenance",
        ),
        pytest.param(
            {"dose_mg": 1000, "interval_h": 12, "infusion_h": 1, "loading_dose_mg": 3500},
            ["loading_dose_mg", "less than or equal to 3000"],
            id="loading-over-3-g",
        ),
        pytest.param(
            {"dose_mg": 0, "interval_h": 12, "infusion_h": 1},
            ["dose_mg", "greater than 0"],
            id="no-dose",
        ),
        pytest.param(
            {"dose_mg": 1e308, "interval_h": 12, "infusion_h": 1},
            ["dose_mg", "less than or equal to 4000"],
            id="dose-1e308",
        ),
        pytest.param(
            {"dose_mg": 1000, "interval_h": 2, "infusion_h": 1},
            ["interval_h", "greater than or equal to 4"],
            id="every-2-h",
        ),
        pytest.param(
            {"dose_mg": 1000, "interval_h": 12, "infusion_h": 1, "route": "oral"},
            ["route", "Extra inputs are not permitted"],
            id="unknown-field",
        ),
        pytest.param(
            {"dose_mg": "lots", "interval_h": 12, "infusion_h": 1},
            ["dose_mg", "valid number"],
            id="dose-not-a-number",
        ),
    ],
)
def test_the_dose_simulator_refuses_impossible_regimens(
    product: RunningProduct, body: dict[str, Any], says: list[str]
) -> None:
    """An impossible regimen is a 422 that names what is wrong with it; nothing is drawn."""
    with httpx.Client(timeout=60) as browser:
        _signed_in(browser, product, product.vancomycin_patient)
        response = browser.post(
            f"{product.service.base_url}/app/api/vancomycin/simulate", json=body
        )
    assert response.status_code == 422, response.text
    for words in says:
        assert words in response.text
    assert "curve" not in response.text


def test_a_loading_dose_changes_the_first_day_not_the_steady_state(
    product: RunningProduct,
) -> None:
    """The recommended regimens can start with a loading dose; the simulator draws it."""
    with httpx.Client(timeout=60) as browser:
        _signed_in(browser, product, product.vancomycin_patient)
        url = f"{product.service.base_url}/app/api/vancomycin/simulate"
        plain = {"dose_mg": 1000, "interval_h": 12, "infusion_h": 1}
        without = browser.post(url, json=plain).json()
        loaded = browser.post(url, json={**plain, "loading_dose_mg": 2000}).json()
    assert loaded["regimen"]["auc24"] == without["regimen"]["auc24"]  # steady state
    assert "loading 2000 mg" in loaded["regimen"]["describe"]

    def first_peak(answer: dict[str, Any]) -> float:
        """The highest median concentration in the 12 h after the regimen starts (now)."""
        start = datetime.fromisoformat(answer["as_of"])
        curve = answer["curve"]
        return max(
            c
            for t, c in zip(curve["t"], curve["median"], strict=True)
            if start < datetime.fromisoformat(t) <= start + timedelta(hours=12)
        )

    assert first_peak(loaded) > first_peak(without) + 5.0  # mg/L: a second gram on board


def _axe_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.x A/AA and best-practice findings on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in results.response["violations"]
    ]


@pytest.mark.parametrize("who", ["risk", "vancomycin"])
def test_the_dashboard_passes_an_accessibility_audit(
    product: RunningProduct, risk_patient: str, chromium: Any, who: str
) -> None:
    """axe-core over the loaded dashboard (labels, names, contrast, landmarks, headings,
    ARIA): no violations, for a risk patient and for the dose simulator."""
    patient = risk_patient if who == "risk" else product.vancomycin_patient
    visit = Visit(chromium, product)
    page = visit.page
    page.goto(f"{product.ehr.base_url}/ehr/patient/{patient}")
    page.locator("#launch-app").click()
    page.wait_for_url(f"{product.service.base_url}/app/")
    expect(page.get_by_test_id("patient-name").first).not_to_contain_text("Loading")
    page.get_by_test_id("history").first.wait_for()
    if who == "risk":
        page.get_by_test_id("waterfall-prevent").first.wait_for()
    else:
        page.get_by_test_id("sim-auc24").first.wait_for()
        expect(page.get_by_test_id("conc-band").first).not_to_have_attribute("points", "")
    assert _axe_violations(page) == []
    visit.context.close()


NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"


def test_the_history_shows_the_clinicians_response(
    product: RunningProduct, risk_patient: str, chromium: Any
) -> None:
    """A card the EHR reported as overridden (CDS Hooks feedback) appears in the app's
    recommendation history with the coded reason."""
    base = product.service.base_url
    hook = "/cds-services/cardio-renal-risk"
    answer = _signed_post(product, hook, _hook_body(product, "patient-view", risk_patient))
    assert answer.status_code == 200, answer.text
    card = answer.json()["cards"][0]
    reason = "Recommendation does not align with patient preferences or values"
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": NON_ADHERENCE,
                        "code": "does-not-align-preferences",
                        "display": reason,
                    }
                },
                "outcomeTimestamp": datetime.now(UTC).isoformat(),
            }
        ]
    }
    sent = _signed_post(product, f"{hook}/feedback", feedback)
    assert sent.status_code == 200, sent.text

    visit = Visit(chromium, product)
    page = visit.page
    page.goto(f"{product.ehr.base_url}/ehr/patient/{risk_patient}")
    page.locator("#launch-app").click()
    page.wait_for_url(f"{base}/app/")
    history = page.get_by_test_id("history").first
    expect(history).to_contain_text(card["summary"][:40])
    expect(history).to_contain_text(f"overridden: {reason}")
    visit.context.close()


def test_the_timelines_show_the_clinical_state_the_cards_act_on(
    product: RunningProduct, chromium: Any
) -> None:
    """Demo patients with history: the AKI card's creatinine and baseline, and the
    statin the ascvd-risk card names, are on the app's timelines and in its clinical
    state, worded and numbered as on the cards; the timelines are trajectories."""
    checks = {
        "acute-kidney-injury": ("Acute kidney injury, ", "creatinine", "aki"),
        "statin-start": ("Untreated 10-year ASCVD risk", "lipids", "statin"),
    }
    for scenario, (card_start, chart, kind) in checks.items():
        visit = Visit(chromium, product)
        page = visit.page
        page.goto(f"{product.ehr.base_url}/ehr/patient/{product.history_patients[scenario]}")
        card = (
            page.locator("article.card").filter(has=page.locator("h3", has_text=card_start)).first
        )
        summary = card.locator("h3").inner_text()
        card.locator("button.card-launch").first.click()
        page.wait_for_url(f"{product.service.base_url}/app/")
        page.get_by_test_id("clinical-state").locator("dd").first.wait_for()
        state = page.get_by_test_id("clinical-state").first.inner_text()
        timeline = page.locator(f'[data-timeline="{chart}"]').first
        marks = timeline.locator(f'[data-band="{kind}"], [data-event="{kind}"]')
        if kind == "aki":
            words = summary.removeprefix(card_start).split(";")[0]  # "KDIGO stage 2: ..."
            assert words in state
            expect(marks.first).to_contain_text(words)
        else:
            statin = summary.split(": on ")[1]  # "atorvastatin 20 mg, moderate intensity"
            assert f"{statin} since" in state
            expect(marks.first).to_contain_text(statin)
        label = timeline.locator("svg").first.get_attribute("aria-label") or ""
        assert re.search(r", ([2-9]|\d\d+) values from", label), label
        visit.context.close()


def test_a_stale_panel_gets_the_same_order_from_both_services(product: RunningProduct) -> None:
    """The demo patient whose last lipid panel is seven years old: neither service shows
    a number; both say the lipids are too old and offer the same order."""
    chart = _chart(product, product.history_patients["stale-panel"])
    summaries = re.findall(r"<h3>([^<]*)</h3>", chart)
    too_old = [s for s in summaries if re.search(r"lipids from \d{4} are too old", s)]
    assert sorted(s.split(":")[0] for s in too_old) == [
        "10-year ASCVD risk not computed",
        "Cardiovascular risk not computed",
    ], summaries
    assert all(s.endswith("order a lipid panel") for s in too_old)
    assert not any(re.search(r"risk \d+\.\d%", s) for s in summaries), summaries
