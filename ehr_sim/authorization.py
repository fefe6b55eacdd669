"""The simulated EHR's authorization server, up to the code: SMART App Launch 2.x.

Discovery (``/fhir/.well-known/smart-configuration``, OpenID Connect discovery, the
JWKS) and the authorization endpoint (RFC 6749 §4.1.1 with SMART's ``aud`` and RFC
7636's S256), with the patient picker of a standalone launch. Exchanging the code for
tokens is `ehr_sim.tokens`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
from html import escape
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ehr_sim.state import (
    RANDOM_BYTES,
    AuthRequest,
    Code,
    Context,
    Pending,
    SimDep,
    Simulator,
    hashed,
    upstream_patients,
)
from ehr_sim.web import (
    BadForm,
    error_page,
    hidden,
    html_page,
    patient_name,
    read_form,
    single_values,
    with_query,
)

log = logging.getLogger("twin_cds.simulator")

router = APIRouter()

#: The patient picker waits this long for a choice (same order as a launch id).
PENDING_LIFETIME_S = 600
#: RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)), 32 bytes -> 43 chars.
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
#: SMART 2.x resource scopes this simulator grants: read/search only (``.rs``), and the
#: SMART 1 spelling ``.read``; the proxy is read-only, so nothing else is granted.
_RESOURCE_SCOPE = re.compile(r"(patient|user)/(\*|[A-Z][A-Za-z]{1,63})\.(rs|read)")
#: Non-resource scopes granted as asked (SMART App Launch 2.x §Scopes and Launch Context).
#: online_access and offline_access buy a refresh token (SMART App Launch 2.x §Scopes for
#: requesting a refresh token), rotated on every use.
_CONTEXT_SCOPES = frozenset(
    {"launch", "launch/patient", "openid", "fhirUser", "online_access", "offline_access"}
)
#: SMART App Launch 2.x §Capability Sets, for what is implemented here (no authorize-post).
CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "permission-v1",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "sso-openid-connect",
)
SCOPES_SUPPORTED = (
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "online_access",
    "offline_access",
    "patient/*.rs",
    "patient/*.read",
    "user/*.rs",
    "user/*.read",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public JWK with kid = its RFC 7638 thumbprint, so the kid follows the key."""
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = b64url(hashlib.sha256(canonical).digest())
    return {"kty": "RSA", "n": jwk["n"], "e": jwk["e"], "kid": kid, "alg": "RS256", "use": "sig"}


class _OAuthError(Exception):
    """An authorization error sent back to the client (RFC 6749 §4.1.2.1, §5.2)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _grantable(scope: str) -> bool:
    return scope in _CONTEXT_SCOPES or _RESOURCE_SCOPE.fullmatch(scope) is not None


def _oauth_redirect(
    redirect_uri: str, error: _OAuthError, state: str | None, status: int = 302
) -> RedirectResponse:
    params = {"error": error.error, "error_description": error.description, "state": state}
    return RedirectResponse(with_query(redirect_uri, params), status)


# -- discovery ---------------------------------------------------------------------


def _endpoints(sim: Simulator) -> dict[str, str]:
    """Where both discovery documents (SMART's and OpenID's) send a client."""
    issuer = sim.config.issuer
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks.json",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
    }


@router.get("/fhir/.well-known/smart-configuration")
async def smart_configuration(sim: SimDep) -> JSONResponse:
    """SMART App Launch 2.x §Conformance: what an app discovers from ``iss``."""
    return JSONResponse(
        {
            **_endpoints(sim),
            "grant_types_supported": ["authorization_code"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(SCOPES_SUPPORTED),
            "capabilities": list(CAPABILITIES),
        }
    )


@router.get("/.well-known/openid-configuration")
async def openid_configuration(sim: SimDep) -> JSONResponse:
    """OpenID Connect Discovery 1.0 §3, for clients that verify id_tokens that way."""
    return JSONResponse(
        {
            **_endpoints(sim),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(SCOPES_SUPPORTED),
            "token_endpoint_auth_methods_supported": ["none"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "nonce", "fhirUser"],
        }
    )


@router.get("/jwks.json")
async def jwks(sim: SimDep) -> JSONResponse:
    return JSONResponse({"keys": [sim.jwk]})


# -- authorization -----------------------------------------------------------------


def issue_code(sim: Simulator, request: AuthRequest, context: Context) -> str:
    sim.state.sweep()
    code = secrets.token_urlsafe(RANDOM_BYTES)
    expires = sim.state.clock() + sim.config.code_lifetime_s
    sim.state.codes[hashed(code)] = Code(request, context, sim.config.user, expires)
    return code


def validate_authorize(sim: Simulator, q: dict[str, str], repeated: set[str]) -> AuthRequest:
    """RFC 6749 §4.1.1 with SMART's aud and RFC 7636's S256, in the brief's order."""
    if repeated:
        raise _OAuthError(
            "invalid_request", f"parameters given more than once: {', '.join(sorted(repeated))}"
        )
    if q.get("response_type") != "code":
        raise _OAuthError("unsupported_response_type", "response_type must be code")
    if q.get("code_challenge") is None or q.get("code_challenge_method") != "S256":
        raise _OAuthError("invalid_request", "PKCE S256 required")
    challenge = q["code_challenge"]
    if _CODE_CHALLENGE.fullmatch(challenge) is None:
        raise _OAuthError("invalid_request", "code_challenge must be 43 base64url characters")
    state = q.get("state")
    if state is None:
        raise _OAuthError("invalid_request", "state is required")
    aud = q.get("aud")
    if aud is None or aud.rstrip("/") != sim.config.fhir_base:
        raise _OAuthError(
            "invalid_request", f"aud must be this EHR's FHIR base {sim.config.fhir_base}"
        )
    requested = q.get("scope", "").split()
    if not requested:
        raise _OAuthError("invalid_scope", "scope is required")
    granted = tuple(dict.fromkeys(s for s in requested if _grantable(s)))
    if not granted:
        raise _OAuthError("invalid_scope", "none of the requested scopes is supported")
    return AuthRequest(
        client_id=q["client_id"],
        redirect_uri=q["redirect_uri"],
        code_challenge=challenge,
        scopes=granted,
        state=state,
        nonce=q.get("nonce"),
    )


@router.get("/authorize", response_model=None)
async def authorize(sim: SimDep, request: Request) -> Response:
    """The authorization endpoint (RFC 6749 §4.1.1; SMART App Launch 2.x §4)."""
    q, repeated = single_values(request.query_params.multi_items())
    client = sim.clients.get(q.get("client_id", ""))
    if client is None or "client_id" in repeated:
        # Never redirect for an unknown client: RFC 6749 §4.1.2.1.
        return error_page(400, "Unknown application", "This client_id is not registered.")
    if "redirect_uri" in repeated or q.get("redirect_uri") not in client.redirect_uris:
        return error_page(
            400,
            "Invalid redirect URI",
            "The redirect_uri is not one registered for this application.",
        )
    redirect_uri = q["redirect_uri"]
    try:
        auth = validate_authorize(sim, q, repeated)
        context = Context()
        launch_id = q.get("launch")
        if launch_id is not None:
            sim.state.sweep()
            launch = sim.state.launches.get(launch_id)
            if launch is None or launch.client_id != client.client_id:
                raise _OAuthError("invalid_request", "unknown or expired launch")
            context = launch.context
        elif "launch/patient" in auth.scopes:
            return await patient_picker(sim, auth)
    except _OAuthError as exc:
        return _oauth_redirect(redirect_uri, exc, q.get("state"))
    code = issue_code(sim, auth, context)
    return RedirectResponse(with_query(redirect_uri, {"code": code, "state": auth.state}), 302)


async def patient_picker(sim: Simulator, auth: AuthRequest) -> Response:
    """Standalone launch with launch/patient: the user chooses (SMART §Standalone)."""
    try:
        patients = await upstream_patients(sim)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("patient picker: upstream FHIR failed (%s)", type(exc).__name__)
        raise _OAuthError("temporarily_unavailable", "the patient list is unavailable") from exc
    sim.state.sweep()
    pending_id = secrets.token_urlsafe(RANDOM_BYTES)
    offered = frozenset(p["id"] for p in patients)
    expires = sim.state.clock() + PENDING_LIFETIME_S
    sim.state.pending[pending_id] = Pending(auth, offered, expires)
    client = sim.clients[auth.client_id]
    rows = []
    for i, p in enumerate(patients):
        rows.append(
            f'<label class="choice" for="p{i}">'
            f'<input type="radio" id="p{i}" name="patient" value="{escape(p["id"])}"'
            f"{' required checked' if i == 0 else ''}> "
            f"<strong>{escape(patient_name(p))}</strong>, "
            f"{escape(str(p.get('gender', 'unknown')))}, "
            f"born {escape(str(p.get('birthDate', 'unknown')))}</label>"
        )
    choices = "".join(rows) or "<p>The FHIR server has no patients.</p>"
    body = (
        "<h1>Choose a patient</h1>"
        f"<p>The application <strong>{escape(client.client_id)}</strong> asks to open a "
        "patient's record. Choose the patient.</p>"
        '<form method="post" action="/authorize/pick">'
        f"{hidden('pending', pending_id)}"
        f"<fieldset><legend>Patients</legend>{choices}</fieldset><p>"
        f'<button type="submit" id="pick-patient" name="action" value="pick"'
        f"{' disabled' if not patients else ''}>Open this patient</button> "
        '<button type="submit" id="deny" name="action" value="deny" formnovalidate>'
        "Cancel</button></p></form>"
    )
    return html_page("Choose a patient", body)


@router.post("/authorize/pick", response_model=None)
async def pick(sim: SimDep, request: Request) -> Response:
    try:
        form = await read_form(request)
    except BadForm as exc:
        return error_page(400, "Invalid request", str(exc))
    sim.state.sweep()
    pending = sim.state.pending.pop(form.get("pending", ""), None)
    if pending is None:
        return error_page(400, "Request expired", "Start again from the application.")
    auth = pending.request
    if form.get("action") == "deny":
        denied = _OAuthError("access_denied", "the user did not choose a patient")
        return _oauth_redirect(auth.redirect_uri, denied, auth.state, 303)
    patient = form.get("patient")
    if patient is None or patient not in pending.offered:
        return error_page(400, "Invalid request", "Choose one of the patients listed.")
    code = issue_code(sim, auth, Context(patient=patient))
    # 303: the browser follows a POST's redirect with GET (RFC 9110 §15.4.4).
    return RedirectResponse(with_query(auth.redirect_uri, {"code": code, "state": auth.state}), 303)
