"""SMART App Launch 2.x for the clinician app, as a backend-for-frontend (BFF).

EHR launch (``iss`` + ``launch``) and standalone launch (``launch/patient``), both by
the authorization code grant with PKCE S256 only (SMART App Launch 2.x, "App
Protection"; RFC 7636). The server does the whole OAuth dance and keeps the tokens:

1. ``GET /app/launch``: ``iss`` must be a configured EHR (nothing is fetched from any
   other); discovery at ``{iss}/.well-known/smart-configuration``; a pending session
   holds a 256-bit ``state``, the PKCE verifier and an OpenID ``nonce``; the browser
   gets only an opaque cookie and a redirect to the EHR's authorize endpoint.
2. ``GET /app/callback``: the pending session is taken (used once), ``state`` must
   match it (constant-time compare), the code is exchanged with the verifier at the
   exact redirect URI, the ``id_token`` is verified (signature from the EHR's JWKS,
   ``iss``, ``aud`` = our client id, expiry, ``nonce``), and a new session (a fresh
   id: no fixation) holds the token and the launch context (``patient``,
   ``encounter``, ``need_patient_banner``, ``smart_style_url``, ``appContext``).

Tokens never reach the browser, its storage, our logs or any cookie but the opaque
session id. Talking to the EHR's authorization server (discovery, the code exchange,
the id_token check) is `smart_app.ehr_oauth`; renewing the token later is
`smart_app.refresh`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cds_service.audit.log import AppAccess, ChainedAuditLog
from cds_service.http.pkce import pkce_challenge
from cds_service.settings import Settings, SmartServerConfig
from smart_app.ehr_oauth import (
    LaunchRefused,
    discover,
    exchange_code,
    token_lifetime,
    verify_id_token,
)
from smart_app.embedding import COOKIE, expired_session_cookie, session_cookie
from smart_app.sessions import SessionStore
from smart_app.style import fetch_style

log = logging.getLogger("twin_cds.smart_app")

router = APIRouter(prefix="/app")

#: A launch must come back within 10 minutes (the pending session's lifetime).
PENDING_TTL_S = 600
#: PKCE verifier: 64 random bytes, 86 base64url characters (RFC 7636 §4.1: 43-128).
VERIFIER_BYTES = 64
#: state and nonce: 256 bits each (the issue asks >= 128).
STATE_BYTES = 32
#: A FHIR resource id (FHIR R4 datatypes, id).
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _page(title: str, message: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<title>{escape(title)} - twin-cds</title>"
        '<link rel="stylesheet" href="/app/static/app.css">'
        f'<main class="notice"><h1>{escape(title)}</h1><p>{escape(message)}</p></main></html>',
        status_code=status,
    )


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.app_sessions
    return store


def _http(request: Request) -> httpx.AsyncClient:
    http: httpx.AsyncClient = request.app.state.runtime.http
    return http


def _same_base(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def configured_server(settings: Settings, iss: str) -> SmartServerConfig | None:
    return next((s for s in settings.smart_servers if _same_base(s.iss, iss)), None)


def twin_scope(settings: Settings, iss: str) -> str | None:
    """The twin store's tenant for this EHR, as hook calls from it are keyed.

    Hooks key twins by the verified client's tenant (or issuer); the app knows the EHR
    by its FHIR server, so it finds the client configured with that server. With
    authentication off (local development) hooks use no tenant, and neither do we.
    """
    if not settings.auth_required:
        return None
    base = iss.rstrip("/")
    for client in settings.clients:
        if any(s.rstrip("/") == base for s in client.fhir_servers):
            return client.tenant or client.iss
    return None


def set_session_cookie(
    response: Response, settings: Settings, session_id: str, max_age: int
) -> None:
    # SameSite=None; Secure; Partitioned when the app may be framed by an EHR, else Lax
    # (smart_app.embedding says why).
    response.headers.append("set-cookie", session_cookie(settings, session_id, max_age))


def _choose_server_page(settings: Settings) -> HTMLResponse:
    items = "".join(
        f'<li><a href="/app/launch?{escape(urlencode({"iss": s.iss}))}">{escape(s.iss)}</a></li>'
        for s in settings.smart_servers
    )
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Choose an EHR - twin-cds</title>"
        '<link rel="stylesheet" href="/app/static/app.css">'
        f'<main class="notice"><h1>Sign in through your EHR</h1><ul>{items}</ul></main></html>'
    )


@router.get("/launch", response_model=None)
async def launch(request: Request, iss: str | None = None, launch: str | None = None) -> Response:
    """EHR launch (iss + launch) or standalone launch (iss alone, or the only EHR)."""
    settings = _settings(request)
    if not settings.smart_servers:
        return _page("Not configured", "No EHR is configured for this app.", 400)
    if iss is None:
        if launch is not None:
            return _page("Launch refused", "An EHR launch must name its FHIR server (iss).", 400)
        if len(settings.smart_servers) > 1:
            return _choose_server_page(settings)
        iss = settings.smart_servers[0].iss
    server = configured_server(settings, iss)
    if server is None:
        # Never contacted: an unconfigured iss could point the app anywhere.
        log.warning("SMART launch refused: iss not configured")
        return _page("Launch refused", "This EHR is not one this app is configured for.", 400)
    try:
        endpoints = await discover(_http(request), server.iss, settings)
    except LaunchRefused as exc:
        return _page("Launch failed", str(exc), exc.status)
    scopes = server.scope.split()
    if launch is None:
        # Standalone: ask the EHR to let the user pick the patient (SMART launch/patient).
        scopes = ["launch/patient" if s == "launch" else s for s in scopes]
    elif "launch" not in scopes:
        scopes.append("launch")
    state = secrets.token_urlsafe(STATE_BYTES)
    verifier = secrets.token_urlsafe(VERIFIER_BYTES)
    nonce = secrets.token_urlsafe(STATE_BYTES)
    pending = {
        "iss": server.iss,
        "client_id": server.client_id,
        "scope": " ".join(scopes),
        "state": state,
        "verifier": verifier,
        "nonce": nonce,
        "token_endpoint": endpoints.token,
        "issuer": endpoints.issuer,
        "jwks_uri": endpoints.jwks_uri,
        "launch": launch is not None,
    }
    session_id = _store(request).create("pending", pending, PENDING_TTL_S)
    params = {
        "response_type": "code",
        "client_id": server.client_id,
        "redirect_uri": settings.app_redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "aud": server.iss,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
        "nonce": nonce,
    }
    if launch is not None:
        params["launch"] = launch
    separator = "&" if urlsplit(endpoints.authorize).query else "?"
    response = RedirectResponse(endpoints.authorize + separator + urlencode(params), 302)
    set_session_cookie(response, settings, session_id, PENDING_TTL_S)
    return response


def _app_context(value: object) -> dict[str, Any] | None:
    """CDS Hooks 2.0 Link.appContext arrives as a string; ours is a JSON object."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {"text": value[:500]}
        return parsed if isinstance(parsed, dict) else {"text": value[:500]}
    return None


@router.get("/callback", response_model=None)
async def callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Response:
    settings = _settings(request)
    store = _store(request)
    # Taken, not read: whatever happens next, this launch cannot be completed twice.
    pending = store.take(request.cookies.get(COOKIE), "pending")
    if pending is None:
        return _page(
            "Launch refused",
            "This browser has no launch in progress (or it expired). Launch the app again "
            "from the EHR.",
            400,
        )
    if state is None or not hmac.compare_digest(state, pending["state"]):
        log.warning("SMART callback refused: state does not match the launch")
        return _page("Launch refused", "The state does not match this browser's launch.", 400)
    if error is not None:
        detail = f"{error}: {error_description}" if error_description else error
        return _page("Authorization refused", f"The EHR refused the launch ({detail}).", 400)
    if not code:
        return _page("Launch refused", "The EHR sent no authorization code.", 400)
    http = _http(request)
    try:
        tokens = await exchange_code(http, pending, code, settings.app_redirect_uri)
        if str(tokens.get("token_type", "")).lower() != "bearer" or not isinstance(
            tokens.get("access_token"), str
        ):
            raise LaunchRefused("the EHR's token response has no bearer access token", 502)
        patient = tokens.get("patient")
        if not isinstance(patient, str) or not _FHIR_ID.match(patient):
            raise LaunchRefused("the EHR gave no patient in the launch context", 400)
        encounter = tokens.get("encounter")
        user = None
        if "openid" in pending["scope"].split():
            claims = await verify_id_token(http, pending, tokens.get("id_token"))
            user = claims.get("fhirUser") or claims.get("sub")
    except LaunchRefused as exc:
        return _page("Launch refused", str(exc), exc.status)
    access_lifetime = token_lifetime(tokens.get("expires_in"), settings.app_session_max_s)
    refresh_token = tokens.get("refresh_token")
    # With a refresh token the session lasts its full length (the access token is renewed
    # before it expires); without one it ends with the access token.
    has_refresh = isinstance(refresh_token, str) and bool(refresh_token)
    lifetime = settings.app_session_max_s if has_refresh else access_lifetime
    now = time.time()
    session = {
        "iss": pending["iss"],
        "client_id": pending["client_id"],
        "access_token": tokens["access_token"],
        "scope": tokens.get("scope") if isinstance(tokens.get("scope"), str) else pending["scope"],
        "patient": patient,
        "encounter": encounter if isinstance(encounter, str) else None,
        "need_patient_banner": tokens.get("need_patient_banner") is not False,
        "smart_style_url": tokens.get("smart_style_url")
        if isinstance(tokens.get("smart_style_url"), str)
        else None,
        "style": await fetch_style(http, tokens.get("smart_style_url"), pending["iss"]),
        "user": user if isinstance(user, str) else None,
        "app_context": _app_context(tokens.get("appContext")),
        "expires_at": now + lifetime,
        "access_expires_at": now + access_lifetime,
        "access_lifetime_s": access_lifetime,
        # Sealed with the session like the access token; never sent to the browser.
        "refresh_token": refresh_token if has_refresh else None,
        "token_endpoint": pending["token_endpoint"],
    }
    # On the record before anything of the patient is shown: who, from which EHR, whom.
    audit: ChainedAuditLog = request.app.state.runtime.audit
    audit.record_app_access(
        AppAccess(
            ehr=pending["iss"],
            client_id=pending["client_id"],
            user=session["user"],
            patient_id=patient,
            encounter_id=session["encounter"],
            tenant=twin_scope(settings, pending["iss"]),
            launch="ehr" if pending.get("launch") else "standalone",
            app_context=session["app_context"],
        )
    )
    session_id = store.create("active", session, lifetime)
    log.info("SMART launch completed (iss %s)", pending["iss"])
    response = RedirectResponse("/app/", 303)
    set_session_cookie(response, settings, session_id, lifetime)
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    _store(request).delete(request.cookies.get(COOKIE))
    response = _page("Signed out", "The session has ended; its token is forgotten.", 200)
    response.headers.append("set-cookie", expired_session_cookie(_settings(request)))
    return response
