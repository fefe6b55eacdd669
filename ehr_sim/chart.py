"""The simulated EHR's pages: the patient list, a chart that fires CDS Hooks 2.0
``patient-view`` and shows the cards with their SMART links as launch buttons, and the
EHR launch (a launch id bound to one app, then off to the app's launch URL).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ehr_sim.state import RANDOM_BYTES, Context, Launch, SimDep, Simulator, Token, upstream_patients
from ehr_sim.web import (
    FHIR_JSON,
    HTML_HEADERS,
    BadForm,
    error_page,
    hidden,
    html_page,
    is_fhir_id,
    origin_of,
    patient_name,
    read_form,
    with_query,
    without_query,
)

log = logging.getLogger("twin_cds.simulator")

router = APIRouter()

#: A launch id is good for 10 minutes (the brief; Epic-style EHRs use minutes, too).
LAUNCH_LIFETIME_S = 600
#: The CDS service's FHIR token need only outlive one hook call (CDS Hooks 2.0, fhirAuthorization).
HOOK_TOKEN_LIFETIME_S = 300
#: The CDS client JWT lives 60 s: CDS Hooks 2.0 "Trusting CDS Clients" recommends a short exp.
CDS_JWT_LIFETIME_S = 60
#: kid of the CDS client JWT, the name the CDS service's configured JWKS carries (the brief).
CDS_JWT_KID = "simulator"
#: What the CDS service's token may read (the brief): what twin-cds prefetches.
CDS_SERVICE_SCOPE = (
    "patient/Patient.rs patient/Observation.rs patient/Condition.rs "
    "patient/MedicationRequest.rs patient/MedicationAdministration.rs patient/Procedure.rs"
)
CDS_SERVICE_CLIENT_ID = "cds-service"
#: SMART App Launch 2.x §Styling: the keys of the smart_style_url document.
SMART_STYLE = {
    "color_background": "#f6f7f9",
    "color_error": "#9e1b1b",
    "color_highlight": "#1f5f99",
    "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
    "color_success": "#1e6b35",
    "color_text": "#1c1e21",
    "dim_border_radius": "4px",
    "dim_font_size": "15px",
    "dim_spacing_size": "16px",
    "font_family_base": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    "font_family_heading": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
}


@router.get("/ehr/smart-style.json")
async def smart_style() -> JSONResponse:
    return JSONResponse(SMART_STYLE)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ehr", 307)


# -- EHR pages -------------------------------------------------------------------------


@router.get("/ehr", response_class=HTMLResponse)
async def ehr_home(sim: SimDep) -> HTMLResponse:
    try:
        patients = await upstream_patients(sim)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("EHR patient list: upstream FHIR failed (%s)", type(exc).__name__)
        return error_page(502, "FHIR server unavailable", "The patient list could not load.")
    rows = "".join(
        f'<tr><td><a href="/ehr/patient/{escape(p["id"])}">{escape(patient_name(p))}</a></td>'
        f"<td>{escape(str(p.get('gender', '')))}</td>"
        f"<td>{escape(str(p.get('birthDate', '')))}</td></tr>"
        for p in patients
    )
    body = (
        "<h1>Patients</h1>"
        f"<p>Signed in as <code>{escape(sim.config.user)}</code>.</p>"
        "<table><caption>Patients on the FHIR server</caption><thead><tr>"
        '<th scope="col">Name</th><th scope="col">Gender</th>'
        '<th scope="col">Birth date</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    return html_page("Patients", body)


def _chart_headers(sim: Simulator) -> dict[str, str]:
    """The chart frames the registered apps, and this server's own pages on the way
    (the launch and authorize redirects run inside the frame)."""
    config = sim.config
    framed = " ".join(
        sorted({"'self'", config.issuer, *(origin_of(c.launch_url) for c in config.clients)})
    )
    return {
        **HTML_HEADERS,
        "Content-Security-Policy": HTML_HEADERS["Content-Security-Policy"]
        + f"; frame-src {framed}",
    }


@router.get("/ehr/patient/{patient_id}", response_class=HTMLResponse)
async def ehr_patient(sim: SimDep, patient_id: str) -> HTMLResponse:
    if not is_fhir_id(patient_id):
        return error_page(404, "No such patient", "That is not a patient id.")
    try:
        response = await sim.client().get(
            f"{sim.upstream}/Patient/{patient_id}", headers={"Accept": FHIR_JSON}
        )
    except httpx.HTTPError:
        return error_page(502, "FHIR server unavailable", "The chart could not load.")
    if response.status_code == 404:
        return error_page(404, "No such patient", "The FHIR server has no such patient.")
    try:
        patient = response.json()
    except ValueError:
        patient = None
    if response.status_code != 200 or not isinstance(patient, dict):
        return error_page(502, "FHIR server unavailable", "The chart could not load.")
    cds = sim.config.cds_service_url
    cards = await fire_patient_view(sim, cds.rstrip("/"), patient_id) if cds else ""
    body = (
        '<section class="chart" aria-labelledby="chart-name">'
        f'<h1 id="chart-name">{escape(patient_name(patient))}</h1>'
        f"<p>{escape(str(patient.get('gender', 'gender unknown')))} · born "
        f"{escape(str(patient.get('birthDate', 'unknown')))} · id "
        f"<code>{escape(patient_id)}</code></p>"
        '<form method="post" action="/ehr/launch">'
        f"{hidden('patient', patient_id)}"
        '<button type="submit" id="launch-app">Launch twin-cds</button></form>'
        # Most EHRs show apps inside the chart: the same launch, into a frame.
        '<form method="post" action="/ehr/launch" target="app-frame">'
        f"{hidden('patient', patient_id)}"
        '<button type="submit" id="launch-app-embedded">Open twin-cds in the chart'
        "</button></form></section>"
        '<iframe name="app-frame" id="app-frame" title="twin-cds in the chart" '
        'style="width:100%;height:40rem;border:1px solid #ccc"></iframe>'
        f"{cards}"
    )
    return html_page(patient_name(patient), body, headers=_chart_headers(sim))


async def fire_patient_view(sim: Simulator, cds_base: str, patient_id: str) -> str:
    """CDS Hooks 2.0 patient-view to each configured service, side by side."""
    results = await asyncio.gather(
        *(
            call_service(sim, f"{cds_base}/cds-services/{sid}", sid, patient_id)
            for sid in sim.config.cds_services
        ),
        return_exceptions=True,
    )
    sections = []
    for sid, result in zip(sim.config.cds_services, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("CDS service %s failed (%s)", sid, type(result).__name__)
            inner = f'<p class="error">{escape(sid)}: the service did not answer.</p>'
        else:
            inner = result
        sections.append(inner)
    return (
        '<section aria-labelledby="cards-h"><h2 id="cards-h">CDS cards</h2>'
        + "".join(sections)
        + "</section>"
    )


async def call_service(sim: Simulator, url: str, service_id: str, patient_id: str) -> str:
    now = sim.state.clock()
    access_token = sim.state.new_token(
        Token(
            client_id=CDS_SERVICE_CLIENT_ID,
            scopes=frozenset(CDS_SERVICE_SCOPE.split()),
            patient=patient_id,
            expires_at=now + HOOK_TOKEN_LIFETIME_S,
        )
    )
    hook = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": sim.config.fhir_base,
        "fhirAuthorization": {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": HOOK_TOKEN_LIFETIME_S,
            "scope": CDS_SERVICE_SCOPE,
            "subject": CDS_SERVICE_CLIENT_ID,
            "patient": patient_id,
        },
        "context": {"userId": sim.config.user, "patientId": patient_id},
    }
    headers = {"Accept": "application/json"}
    if sim.cds_key is not None:
        claims = {
            "iss": sim.config.cds_client_iss,
            "aud": url,
            "iat": int(now),
            "exp": int(now) + CDS_JWT_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        signed = jwt.encode(claims, sim.cds_key, algorithm="ES384", headers={"kid": CDS_JWT_KID})
        headers["Authorization"] = f"Bearer {signed}"
    response = await sim.client().post(url, json=hook, headers=headers)
    if response.status_code != 200:
        return (
            f'<p class="error">{escape(service_id)}: the service answered '
            f"HTTP {response.status_code}.</p>"
        )
    try:
        cards = response.json().get("cards")
    except (ValueError, AttributeError):
        cards = None
    if not isinstance(cards, list):
        return f'<p class="error">{escape(service_id)}: the answer had no cards.</p>'
    if not cards:
        return f"<p>{escape(service_id)}: no cards.</p>"
    return "".join(_render_card(c, patient_id) for c in cards if isinstance(c, dict))


@router.post("/ehr/launch", response_model=None)
async def ehr_launch(sim: SimDep, request: Request) -> Response:
    """EHR launch: a launch id bound to one app, then off to the app's launch URL."""
    try:
        form = await read_form(request)
    except BadForm as exc:
        return error_page(400, "Invalid launch", str(exc))
    patient = form.get("patient", "")
    encounter = form.get("encounter")
    if not is_fhir_id(patient) or (encounter is not None and not is_fhir_id(encounter)):
        return error_page(400, "Invalid launch", "patient (and encounter) must be FHIR ids.")
    launch_url = form.get("launch_url", sim.config.clients[0].launch_url)
    target = without_query(launch_url)
    client = next((c for c in sim.config.clients if without_query(c.launch_url) == target), None)
    if client is None:
        # Only registered apps are opened: the form must not be an open redirect.
        return error_page(400, "Invalid launch", "That application is not registered.")
    sim.state.sweep()
    launch_id = secrets.token_urlsafe(RANDOM_BYTES)
    context = Context(patient, encounter, form.get("app_context"))
    expires = sim.state.clock() + LAUNCH_LIFETIME_S
    sim.state.launches[launch_id] = Launch(client.client_id, context, expires)
    params = {"iss": sim.config.fhir_base, "launch": launch_id}
    return RedirectResponse(with_query(launch_url, params), 303)


def _render_card(card: Mapping[str, Any], patient_id: str) -> str:
    """One CDS Hooks 2.0 card: summary, indicator, source, detail, and its links."""
    indicator = str(card.get("indicator", "info"))
    if indicator not in ("info", "warning", "critical"):
        indicator = "info"
    source = card.get("source")
    label = source.get("label") if isinstance(source, dict) else None
    parts = [
        f'<article class="card {indicator}">',
        f'<p class="indicator">{escape(indicator)}</p>',
        f"<h3>{escape(str(card.get('summary', '(no summary)')))}</h3>",
        f"<p>Source: {escape(str(label or 'unknown'))}</p>",
    ]
    if isinstance(card.get("detail"), str):
        parts.append(f'<div class="detail">{escape(card["detail"])}</div>')
    for link in card.get("links") or []:
        if not isinstance(link, dict):
            continue
        url, text = link.get("url"), link.get("label")
        if not isinstance(url, str) or not isinstance(text, str):
            continue
        if link.get("type") == "smart":
            app_context = link.get("appContext")
            parts.append(
                '<form method="post" action="/ehr/launch">'
                f"{hidden('patient', patient_id)}{hidden('launch_url', url)}"
                f"{hidden('app_context', app_context if isinstance(app_context, str) else None)}"
                f'<button type="submit" class="card-launch">{escape(text)}</button></form>'
            )
        elif urlsplit(url).scheme in ("http", "https"):
            parts.append(
                f'<p><a href="{escape(url)}" rel="noopener noreferrer">{escape(text)}</a></p>'
            )
    parts.append("</article>")
    return "".join(parts)
