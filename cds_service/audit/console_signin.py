"""Signing in to the auditor console: OpenID Connect with the hospital's provider.

Authorization code with PKCE S256, state and nonce; ``TWIN_CDS_AUDIT_CONSOLE_ISSUER``
names one of the configured auditor issuers, whose keys verify the id_token. The tokens
never reach the browser and are not kept: the id_token is verified once at the callback,
and the session (in the clinician app's sealed server-side store) holds only who signed
in, the tenant and a form token. The role (``auditor``) and tenant come from the
id_token's claims; an issuer bound to a tenant refuses a token naming another.
"""

from __future__ import annotations

import secrets
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import jwt
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.audit.console_html import ConsoleUser, headers, page
from cds_service.http.pkce import pkce_challenge
from cds_service.settings import Settings

router = APIRouter(prefix="/audit/ui", include_in_schema=False)

COOKIE = "twin_audit_console"
#: A sign-in must come back within this (the provider's page, the user's password).
PENDING_TTL_S = 600
#: A console session's length: one working day, as the clinician app's default.
SESSION_TTL_S = 8 * 3600


class SignInRequired(Exception):
    """Not signed in (or the session ended): go to the sign-in page."""


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _provider(settings: Settings) -> AuditorIssuerConfig:
    iss = settings.audit_console_issuer
    for auditor in settings.auditors:
        if iss is not None and auditor.iss == iss:
            return auditor
    raise HTTPException(404, "the auditor console is not configured")


def _secure(settings: Settings) -> bool:
    parts = urlsplit(settings.public_base_url)
    return not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def _set_cookie(response: Response, settings: Settings, value: str, max_age: int) -> None:
    # Lax: the provider's redirect back to the callback is a top-level cross-site navigation.
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/audit/ui",
        httponly=True,
        secure=_secure(settings),
        samesite="lax",
    )


def current_user(request: Request) -> ConsoleUser:
    data = request.app.state.app_sessions.get(request.cookies.get(COOKIE), "active")
    if not data or data.get("purpose") != "audit-console":
        raise SignInRequired
    return ConsoleUser(data["iss"], data["sub"], data.get("tenant"), data["csrf"])


UserDep = Annotated[ConsoleUser, Depends(current_user)]


async def _discover(request: Request, provider: AuditorIssuerConfig) -> dict[str, str]:
    http = request.app.state.runtime.http
    url = provider.iss.rstrip("/") + "/.well-known/openid-configuration"
    response = await http.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    doc = response.json()
    out: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint"):
        endpoint = doc.get(name)
        # Only the configured provider is contacted: its endpoints must be on its origin.
        if not isinstance(endpoint, str) or not _same_origin(endpoint, provider.iss):
            raise HTTPException(502, f"the provider's {name} is not on {provider.iss}")
        out[name] = endpoint
    return out


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _redirect_uri(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + "/audit/ui/callback"


@router.get("/login")
async def login(request: Request) -> Response:
    settings = settings_of(request)
    provider = _provider(settings)
    endpoints = await _discover(request, provider)
    state, verifier, nonce = (secrets.token_urlsafe(32) for _ in range(3))
    pending = request.app.state.app_sessions.create(
        "pending",
        {"purpose": "audit-console", "state": state, "verifier": verifier, "nonce": nonce},
        PENDING_TTL_S,
    )
    params = {
        "response_type": "code",
        "client_id": settings.audit_console_client_id,
        "redirect_uri": _redirect_uri(settings),
        "scope": "openid",
        "state": state,
        "nonce": nonce,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if settings.audit_console_aud:
        params["aud"] = settings.audit_console_aud
    response = RedirectResponse(
        endpoints["authorization_endpoint"] + "?" + urlencode(params), 302, headers=headers()
    )
    _set_cookie(response, settings, pending, PENDING_TTL_S)
    return response


def _refused(message: str, status: int = 400) -> HTMLResponse:
    return page("Sign-in refused", f"<p>{escape(message)}</p>", status)


def _verify_id_token(
    token: str, provider: AuditorIssuerConfig, client_id: str, nonce: str
) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    keys = jwt.PyJWKSet.from_dict(provider.jwks)
    key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
    if key is None:
        raise jwt.InvalidTokenError("no provider key has the id_token's kid")
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=list(provider.algorithms),
        audience=client_id,
        issuer=provider.iss,
        options={"require": ["exp", "iat", "sub", "iss", "aud"]},
    )
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise jwt.InvalidTokenError("the id_token's nonce is not the one sent")
    return claims


def _is_auditor(claims: dict[str, Any]) -> bool:
    roles = claims.get("roles")
    return claims.get("role") == "auditor" or (isinstance(roles, list) and "auditor" in roles)


@router.get("/callback")
async def callback(request: Request, code: str = "", state: str = "") -> Response:
    settings = settings_of(request)
    provider = _provider(settings)
    pending = request.app.state.app_sessions.take(request.cookies.get(COOKIE), "pending")
    if not pending or pending.get("purpose") != "audit-console":
        return _refused("This sign-in was not started here, or it took too long. Start again.")
    if not code or not secrets.compare_digest(state, str(pending["state"])):
        return _refused("The provider's answer does not belong to this sign-in.")
    endpoints = await _discover(request, provider)
    answer = await request.app.state.runtime.http.post(
        endpoints["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": _redirect_uri(settings),
            "client_id": settings.audit_console_client_id,
            "code_verifier": pending["verifier"],
        },
        headers={"Accept": "application/json"},
    )
    if answer.status_code != 200:
        return _refused("The provider refused the sign-in code.", 502)
    id_token = answer.json().get("id_token")
    if not isinstance(id_token, str):
        return _refused("The provider sent no id_token.", 502)
    try:
        claims = _verify_id_token(
            id_token, provider, settings.audit_console_client_id, pending["nonce"]
        )
    except jwt.PyJWTError:
        return _refused("The provider's id_token could not be verified.", 401)
    if not _is_auditor(claims):
        return _refused("Your account does not have the auditor role.", 403)
    tenant = claims.get("tenant")
    if provider.tenant is not None and tenant not in (None, provider.tenant):
        return _refused("Your account names a tenant this provider may not read.", 403)
    session = request.app.state.app_sessions.create(
        "active",
        {
            "purpose": "audit-console",
            "iss": provider.iss,
            "sub": str(claims["sub"]),
            "tenant": provider.tenant or (tenant if isinstance(tenant, str) else None),
            "csrf": secrets.token_urlsafe(32),
        },
        SESSION_TTL_S,
    )
    # The access token and the id_token end here: nothing of them goes to the browser.
    response = RedirectResponse("/audit/ui", 303, headers=headers())
    _set_cookie(response, settings, session, SESSION_TTL_S)
    return response


def check_csrf(user: ConsoleUser, csrf: str) -> None:
    if not secrets.compare_digest(csrf, user.csrf):
        raise HTTPException(403, "form token mismatch")


@router.post("/logout")
async def logout(request: Request, user: UserDep, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(user, csrf)
    request.app.state.app_sessions.delete(request.cookies.get(COOKIE))
    response = RedirectResponse("/audit/ui", 303, headers=headers())
    response.delete_cookie(COOKIE, path="/audit/ui")
    return response
