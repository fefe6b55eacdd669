"""An EHR and its SMART authorization server, simulated, in front of the demo FHIR server.

The clinician app has to be launched by *something*: an EHR that shows a chart, fires
CDS Hooks, hands the app a launch id, runs the OAuth 2.0 authorization code flow with
PKCE, and then lets the app read only what it was granted. The demo FHIR server
(sekmet) does none of that, and a real EHR sandbox is not something tests can start on
127.0.0.1. So this module plays that EHR, strictly enough that a client bug shows up
here rather than at a hospital:

* SMART App Launch 2.x discovery (``/fhir/.well-known/smart-configuration``), EHR
  launch and standalone launch (a patient picker), OpenID Connect id_tokens (RS256);
* OAuth 2.0 (RFC 6749) with PKCE S256 only (RFC 7636), public clients, exact
  redirect URIs, single-use codes whose replay revokes the tokens they bought;
* a FHIR proxy that enforces the token's patient and scopes before anything reaches
  the upstream server, and rewrites the upstream's URLs so paging stays behind it;
* EHR pages: a patient list, a chart that fires CDS Hooks 2.0 ``patient-view`` and
  shows the cards with their SMART links as launch buttons.

Everything lives in memory in one process, which is what a simulator needs and all it
should be trusted with. It is not the production authorization server of anyone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

if TYPE_CHECKING:
    from ehr_sim.demo import RunningServer

log = logging.getLogger("twin_cds.simulator")

# --- Constants, each with where it comes from ---------------------------------------

#: RSA modulus for the id_token key: NIST SP 800-57 Part 1 Rev. 5 (112-bit security).
RSA_KEY_BITS = 2048
#: id_token lifetime; OpenID Connect Core §2 leaves it to the issuer, minutes is usual.
ID_TOKEN_LIFETIME_S = 300
#: A launch id is good for 10 minutes (the brief; Epic-style EHRs use minutes, too).
LAUNCH_LIFETIME_S = 600
#: The patient picker waits this long for a choice (same order as a launch id).
PENDING_LIFETIME_S = 600
#: The CDS service's FHIR token need only outlive one hook call (CDS Hooks 2.0, fhirAuthorization).
HOOK_TOKEN_LIFETIME_S = 300
#: The CDS client JWT lives 60 s: CDS Hooks 2.0 "Trusting CDS Clients" recommends a short exp.
CDS_JWT_LIFETIME_S = 60
#: kid of the CDS client JWT, the name the CDS service's configured JWKS carries (the brief).
CDS_JWT_KID = "simulator"
#: Random values carry 256 bits; RFC 6749 §10.10 asks ≥ 128 bits for codes and tokens.
RANDOM_BYTES = 32
#: Outbound calls (upstream FHIR, CDS services) give up after this; the demo is local.
OUTBOUND_TIMEOUT_S = 10.0
#: The most patients the picker and the EHR list show: ``Patient?_count=100`` (the brief).
PATIENT_LIST_COUNT = 100
#: A form or token request body larger than this is not a browser or an OAuth client.
MAX_FORM_BYTES = 64 * 1024
#: RFC 7636 §4.2: S256 challenge = BASE64URL(SHA256(verifier)), 32 bytes -> 43 chars.
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
#: RFC 7636 §4.1: code_verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / - . _ ~
_CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
#: FHIR R4 id datatype: [A-Za-z0-9\-\.]{1,64} (http://hl7.org/fhir/R4/datatypes.html#id).
_FHIR_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")
#: A FHIR resource type name (R4 names are CamelCase ASCII letters).
_FHIR_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
#: SMART 2.x resource scopes this simulator grants: read/search only (``.rs``), and the
#: SMART 1 spelling ``.read``; the proxy is read-only, so nothing else is granted.
_RESOURCE_SCOPE = re.compile(r"(patient|user)/(\*|[A-Z][A-Za-z]{1,63})\.(rs|read)")
#: Non-resource scopes granted as asked (SMART App Launch 2.x §Scopes and Launch Context).
#: online_access and offline_access buy a refresh token (SMART App Launch 2.x §Scopes for
#: requesting a refresh token), rotated on every use.
_CONTEXT_SCOPES = frozenset(
    {"launch", "launch/patient", "openid", "fhirUser", "online_access", "offline_access"}
)
_REFRESH_SCOPES = frozenset({"online_access", "offline_access"})
#: A refresh token lives as long as an 8-hour shift (online_access: while the user is
#: "online"); each use replaces it with a new one (RFC 9700 §4.14.2, rotation).
REFRESH_TOKEN_LIFETIME_S = 8 * 3600
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
#: Token responses must not be cached: RFC 6749 §5.1.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: HTML pages: no framing (clickjacking of the picker), no scripts, no referrer leaks.
_HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_FHIR_JSON = "application/fhir+json"
#: Upstream headers worth passing back to the app (body-related ones are recomputed).
_PASSED_HEADERS = ("content-type", "etag", "last-modified")


# --- Public configuration -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatedClient:
    """A SMART app registered with the simulated EHR (a public client: no secret)."""

    client_id: str
    redirect_uris: tuple[str, ...]  # exact-match list (RFC 6749 §3.1.2.3)
    launch_url: str  # the EHR opens {launch_url}?iss=...&launch=...
    #: Further id_token claims for this client's users, e.g. (("role", "auditor"),
    #: ("tenant", "hospital-a")) for the audit console; the standard claims win.
    id_token_claims: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What the simulated EHR fronts, where it is reached, and who may launch from it."""

    fhir_upstream: str  # the real FHIR server, e.g. http://127.0.0.1:5555/fhir (sekmet)
    public_base_url: str  # where this simulator is reached, e.g. http://127.0.0.1:7000
    clients: tuple[SimulatedClient, ...]  # the first one is what the chart's button opens
    cds_service_url: str | None = None  # e.g. http://127.0.0.1:8080; None: no cards
    cds_services: tuple[str, ...] = ("cardio-renal-risk", "ascvd-risk")  # patient-view
    user: str = "Practitioner/ehr-demo-clinician"  # the signed-in clinician (sub, fhirUser)
    token_lifetime_s: int = 3600
    code_lifetime_s: int = 60  # RFC 6749 §4.1.2: "a maximum ... of 10 minutes is RECOMMENDED"
    cds_signing_key_pem: bytes | None = None  # EC P-384 key: hook calls carry an ES384 JWT
    cds_client_iss: str | None = None  # that JWT's iss

    @property
    def issuer(self) -> str:
        return self.public_base_url.rstrip("/")

    @property
    def fhir_base(self) -> str:
        """The FHIR base the apps see (the ``iss`` and the ``aud``)."""
        return self.issuer + "/fhir"


# --- In-memory state ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """Launch context handed to the app with its token."""

    patient: str | None = None
    encounter: str | None = None
    app_context: str | None = None


@dataclass(frozen=True, slots=True)
class _Launch:
    client_id: str
    context: _Context
    expires_at: float


@dataclass(frozen=True, slots=True)
class _AuthRequest:
    """An authorize request that passed every check, waiting only for its patient."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    state: str
    nonce: str | None


@dataclass(frozen=True, slots=True)
class _Pending:
    request: _AuthRequest
    offered: frozenset[str]
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Code:
    request: _AuthRequest
    context: _Context
    user: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Redeemed:
    """A code already exchanged: remembered so a replay can revoke what it bought."""

    tokens: tuple[str, ...]
    keep_until: float


@dataclass(frozen=True, slots=True)
class _Token:
    client_id: str
    scopes: frozenset[str]
    patient: str | None
    expires_at: float
    #: The refresh-token family this access token came from (None: no refresh token).
    family: str | None = None


@dataclass(frozen=True, slots=True)
class _Refresh:
    """A live refresh token: what a new access token from it may carry."""

    client_id: str
    scopes: frozenset[str]
    context: _Context
    family: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Spent:
    """A refresh token already rotated: presented again, it revokes its whole family."""

    family: str
    expires_at: float


def _digest(secret: str) -> str:
    """Codes and tokens are kept by their SHA-256, so a dump of the state grants nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _State:
    """Launches, pending picks, codes and tokens of this process, each with its expiry.

    One event loop touches it and no handler awaits between a check and its update, so
    a code cannot be exchanged twice concurrently.
    """

    clock: Callable[[], float]
    launches: dict[str, _Launch] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    redeemed: dict[str, _Redeemed] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)
    refresh: dict[str, _Refresh] = field(default_factory=dict)
    spent_refresh: dict[str, _Spent] = field(default_factory=dict)

    def revoke_family(self, family: str) -> None:
        for table in (self.tokens, self.refresh):
            for key in [k for k, v in table.items() if v.family == family]:
                del table[key]

    def sweep(self) -> None:
        now = self.clock()
        tables = (self.launches, self.pending, self.codes, self.tokens, self.refresh)
        for table in (*tables, self.spent_refresh):
            for key in [k for k, v in table.items() if v.expires_at <= now]:
                del table[key]
        for key in [k for k, v in self.redeemed.items() if v.keep_until <= now]:
            del self.redeemed[key]

    def new_token(self, grant: _Token) -> str:
        token = secrets.token_urlsafe(RANDOM_BYTES)
        self.tokens[_digest(token)] = grant
        return token

    def live_token(self, token: str) -> _Token | None:
        grant = self.tokens.get(_digest(token))
        if grant is None or grant.expires_at <= self.clock():
            return None
        return grant


# --- Small helpers ----------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public JWK with kid = its RFC 7638 thumbprint, so the kid follows the key."""
    jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = _b64url(hashlib.sha256(canonical).digest())
    return {"kty": "RSA", "n": jwk["n"], "e": jwk["e"], "kid": kid, "alg": "RS256", "use": "sig"}


def _is_fhir_id(value: str) -> bool:
    # An all-dots id ("..") is a path segment, not a resource: never forward it.
    return _FHIR_ID.fullmatch(value) is not None and value.strip(".") != ""


def _with_query(url: str, params: Mapping[str, str | None]) -> str:
    """``url`` with ``params`` set, keeping the rest of the query it already had."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    added = [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(kept + added)))


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def _single_values(items: Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """RFC 6749 §3.1: empty parameters count as absent, and none may repeat."""
    values: dict[str, str] = {}
    repeated: set[str] = set()
    for key, value in items:
        if value == "":
            continue
        if key in values:
            repeated.add(key)
        else:
            values[key] = value
    return values, repeated


class _BadForm(ValueError):
    """A form body that is not one url-encoded form of single values."""


async def _read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _BadForm("the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise _BadForm("the body is too large")
    try:
        items = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadForm("the body is not a url-encoded form") from exc
    values, repeated = _single_values(items)
    if repeated:
        raise _BadForm(f"parameters given more than once: {', '.join(sorted(repeated))}")
    return values


def _patient_name(patient: Mapping[str, Any]) -> str:
    """The official name if there is one, as 'Given Family'; FHIR HumanName otherwise."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    if not names:
        return "(no name recorded)"
    name = next((n for n in names if n.get("use") == "official"), names[0])
    if isinstance(name.get("text"), str) and name["text"].strip():
        return str(name["text"]).strip()
    given = [g for g in name.get("given") or [] if isinstance(g, str)]
    family = name.get("family")
    words = [*given, family] if isinstance(family, str) else given
    return " ".join(words).strip() or "(no name recorded)"


def _outcome(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }
    return Response(json.dumps(body), status, headers=dict(headers or {}), media_type=_FHIR_JSON)


# --- HTML -----------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c1e21}
header.ehr{background:#1f3b57;color:#fff;padding:.6rem 1rem}
header.ehr a{color:#fff}
main{max-width:60rem;margin:1rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #d8dde3}
.chart{background:#fff;border:1px solid #d8dde3;padding:.8rem 1rem;margin-bottom:1rem}
.card{background:#fff;border:1px solid #d8dde3;border-left:.4rem solid #1f5f99;
 padding:.6rem 1rem;margin:.6rem 0}
.card.warning{border-left-color:#b36b00}.card.critical{border-left-color:#9e1b1b}
.detail{white-space:pre-wrap}
.indicator{font-weight:bold;text-transform:uppercase;font-size:.8rem}
button{font:inherit;padding:.35rem .8rem;cursor:pointer}
button:focus,input:focus,a:focus{outline:3px solid #f0b400;outline-offset:2px}
fieldset{background:#fff;border:1px solid #d8dde3}
.choice{display:block;padding:.3rem 0}
.error{color:#9e1b1b}
"""


def _html(
    title: str, body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · EHR simulator</title><style>{_CSS}</style></head><body>"
        '<header class="ehr"><a href="/ehr">EHR simulator</a></header>'
        f"<main>{body}</main></body></html>"
    )
    return HTMLResponse(page, status, headers=dict(headers or _HTML_HEADERS))


def _error_page(status: int, title: str, message: str) -> HTMLResponse:
    return _html(title, f'<h1>{escape(title)}</h1><p class="error">{escape(message)}</p>', status)


def _hidden(name: str, value: str | None) -> str:
    if value is None:
        return ""
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


# --- The app ----------------------------------------------------------------------------


class _OAuthError(Exception):
    """An authorization error sent back to the client (RFC 6749 §4.1.2.1, §5.2)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(slots=True)
class _Runtime:
    """What the handlers share. Not frozen: the lifespan sets ``http`` (one pooled client
    for the upstream and the CDS services) and clears it when the app stops."""

    config: SimulatorConfig
    state: _State
    key: rsa.RSAPrivateKey
    jwk: dict[str, Any]
    cds_key: ec.EllipticCurvePrivateKey | None
    http: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self.http is None:
            raise RuntimeError("the simulator's HTTP client exists only while the app runs")
        return self.http


def _load_cds_key(config: SimulatorConfig) -> ec.EllipticCurvePrivateKey | None:
    if config.cds_signing_key_pem is None:
        return None
    if not config.cds_client_iss:
        raise ValueError("cds_signing_key_pem needs cds_client_iss (the JWT's iss)")
    key = serialization.load_pem_private_key(config.cds_signing_key_pem, password=None)
    # CDS Hooks 2.0 asks for ES384 (or RS384); ES384 is P-384.
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise ValueError("cds_signing_key_pem must be an EC P-384 private key (ES384)")
    return key


def create_simulator_app(
    config: SimulatorConfig,
    *,
    clock: Callable[[], float] = time.time,
    transport: httpx.AsyncBaseTransport | None = None,
    signing_key: rsa.RSAPrivateKey | None = None,
) -> FastAPI:
    """Build the simulator.

    ``clock`` (epoch seconds), ``transport`` (for every outbound call: the upstream FHIR
    server and the CDS services) and ``signing_key`` (the id_token key, else a fresh
    2048-bit RSA key) exist so tests can move time, fake the network and skip key
    generation; the demo passes none of them.
    """
    if not config.clients:
        raise ValueError("the simulator needs at least one client")
    key = signing_key or rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    rt = _Runtime(config, _State(clock), key, _public_jwk(key), _load_cds_key(config))
    clients = {c.client_id: c for c in config.clients}
    upstream = config.fhir_upstream.rstrip("/")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            transport=transport, timeout=OUTBOUND_TIMEOUT_S, follow_redirects=False
        ) as http:
            rt.http = http
            try:
                yield
            finally:
                rt.http = None

    app = FastAPI(
        title="EHR simulator",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    # -- discovery ---------------------------------------------------------------------

    # Where both discovery documents (SMART's and OpenID's) send a client.
    endpoints = {
        "issuer": config.issuer,
        "jwks_uri": f"{config.issuer}/jwks.json",
        "authorization_endpoint": f"{config.issuer}/authorize",
        "token_endpoint": f"{config.issuer}/token",
    }

    @app.get("/fhir/.well-known/smart-configuration")
    async def smart_configuration() -> JSONResponse:
        """SMART App Launch 2.x §Conformance: what an app discovers from ``iss``."""
        return JSONResponse(
            {
                **endpoints,
                "grant_types_supported": ["authorization_code"],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
                "scopes_supported": list(SCOPES_SUPPORTED),
                "capabilities": list(CAPABILITIES),
            }
        )

    @app.get("/.well-known/openid-configuration")
    async def openid_configuration() -> JSONResponse:
        """OpenID Connect Discovery 1.0 §3, for clients that verify id_tokens that way."""
        return JSONResponse(
            {
                **endpoints,
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

    @app.get("/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse({"keys": [rt.jwk]})

    @app.get("/ehr/smart-style.json")
    async def smart_style() -> JSONResponse:
        return JSONResponse(SMART_STYLE)

    @app.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/ehr", 307)

    # -- authorization -----------------------------------------------------------------

    def issue_code(request: _AuthRequest, context: _Context) -> str:
        rt.state.sweep()
        code = secrets.token_urlsafe(RANDOM_BYTES)
        expires = rt.state.clock() + config.code_lifetime_s
        rt.state.codes[_digest(code)] = _Code(request, context, config.user, expires)
        return code

    def validate_authorize(q: dict[str, str], repeated: set[str]) -> _AuthRequest:
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
        if aud is None or aud.rstrip("/") != config.fhir_base:
            raise _OAuthError(
                "invalid_request", f"aud must be this EHR's FHIR base {config.fhir_base}"
            )
        requested = q.get("scope", "").split()
        if not requested:
            raise _OAuthError("invalid_scope", "scope is required")
        granted = tuple(dict.fromkeys(s for s in requested if _grantable(s)))
        if not granted:
            raise _OAuthError("invalid_scope", "none of the requested scopes is supported")
        return _AuthRequest(
            client_id=q["client_id"],
            redirect_uri=q["redirect_uri"],
            code_challenge=challenge,
            scopes=granted,
            state=state,
            nonce=q.get("nonce"),
        )

    @app.get("/authorize", response_model=None)
    async def authorize(request: Request) -> Response:
        """The authorization endpoint (RFC 6749 §4.1.1; SMART App Launch 2.x §4)."""
        q, repeated = _single_values(request.query_params.multi_items())
        client = clients.get(q.get("client_id", ""))
        if client is None or "client_id" in repeated:
            # Never redirect for an unknown client: RFC 6749 §4.1.2.1.
            return _error_page(400, "Unknown application", "This client_id is not registered.")
        if "redirect_uri" in repeated or q.get("redirect_uri") not in client.redirect_uris:
            return _error_page(
                400,
                "Invalid redirect URI",
                "The redirect_uri is not one registered for this application.",
            )
        redirect_uri = q["redirect_uri"]
        try:
            auth = validate_authorize(q, repeated)
            context = _Context()
            launch_id = q.get("launch")
            if launch_id is not None:
                rt.state.sweep()
                launch = rt.state.launches.get(launch_id)
                if launch is None or launch.client_id != client.client_id:
                    raise _OAuthError("invalid_request", "unknown or expired launch")
                context = launch.context
            elif "launch/patient" in auth.scopes:
                return await patient_picker(auth)
        except _OAuthError as exc:
            return _oauth_redirect(redirect_uri, exc, q.get("state"))
        code = issue_code(auth, context)
        return RedirectResponse(_with_query(redirect_uri, {"code": code, "state": auth.state}), 302)

    async def upstream_patients() -> list[dict[str, Any]]:
        response = await rt.client().get(
            f"{upstream}/Patient",
            params={"_count": str(PATIENT_LIST_COUNT)},
            headers={"Accept": _FHIR_JSON},
        )
        response.raise_for_status()
        bundle = response.json()
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        return [
            e["resource"]
            for e in entries or []
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "Patient"
            and isinstance(e["resource"].get("id"), str)
        ]

    async def patient_picker(auth: _AuthRequest) -> Response:
        """Standalone launch with launch/patient: the user chooses (SMART §Standalone)."""
        try:
            patients = await upstream_patients()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("patient picker: upstream FHIR failed (%s)", type(exc).__name__)
            raise _OAuthError("temporarily_unavailable", "the patient list is unavailable") from exc
        rt.state.sweep()
        pending_id = secrets.token_urlsafe(RANDOM_BYTES)
        offered = frozenset(p["id"] for p in patients)
        expires = rt.state.clock() + PENDING_LIFETIME_S
        rt.state.pending[pending_id] = _Pending(auth, offered, expires)
        client = clients[auth.client_id]
        rows = []
        for i, p in enumerate(patients):
            rows.append(
                f'<label class="choice" for="p{i}">'
                f'<input type="radio" id="p{i}" name="patient" value="{escape(p["id"])}"'
                f"{' required checked' if i == 0 else ''}> "
                f"<strong>{escape(_patient_name(p))}</strong>, "
                f"{escape(str(p.get('gender', 'unknown')))}, "
                f"born {escape(str(p.get('birthDate', 'unknown')))}</label>"
            )
        choices = "".join(rows) or "<p>The FHIR server has no patients.</p>"
        body = (
            "<h1>Choose a patient</h1>"
            f"<p>The application <strong>{escape(client.client_id)}</strong> asks to open a "
            "patient's record. Choose the patient.</p>"
            '<form method="post" action="/authorize/pick">'
            f"{_hidden('pending', pending_id)}"
            f"<fieldset><legend>Patients</legend>{choices}</fieldset><p>"
            f'<button type="submit" id="pick-patient" name="action" value="pick"'
            f"{' disabled' if not patients else ''}>Open this patient</button> "
            '<button type="submit" id="deny" name="action" value="deny" formnovalidate>'
            "Cancel</button></p></form>"
        )
        return _html("Choose a patient", body)

    @app.post("/authorize/pick", response_model=None)
    async def pick(request: Request) -> Response:
        try:
            form = await _read_form(request)
        except _BadForm as exc:
            return _error_page(400, "Invalid request", str(exc))
        rt.state.sweep()
        pending = rt.state.pending.pop(form.get("pending", ""), None)
        if pending is None:
            return _error_page(400, "Request expired", "Start again from the application.")
        auth = pending.request
        if form.get("action") == "deny":
            denied = _OAuthError("access_denied", "the user did not choose a patient")
            return _oauth_redirect(auth.redirect_uri, denied, auth.state, 303)
        patient = form.get("patient")
        if patient is None or patient not in pending.offered:
            return _error_page(400, "Invalid request", "Choose one of the patients listed.")
        code = issue_code(auth, _Context(patient=patient))
        # 303: the browser follows a POST's redirect with GET (RFC 9110 §15.4.4).
        return RedirectResponse(
            _with_query(auth.redirect_uri, {"code": code, "state": auth.state}), 303
        )

    # -- token ---------------------------------------------------------------------------

    def token_error(error: str, description: str, status: int = 400) -> JSONResponse:
        return JSONResponse(
            {"error": error, "error_description": description}, status, headers=_NO_STORE
        )

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        """The token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6), public clients only."""
        try:
            form = await _read_form(request)
        except _BadForm as exc:
            return token_error("invalid_request", str(exc))
        if form.get("grant_type") == "refresh_token":
            return refresh(form)
        if form.get("grant_type") != "authorization_code":
            return token_error(
                "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
            )
        code = form.get("code")
        if code is None:
            return token_error("invalid_request", "code is required")
        state = rt.state
        state.sweep()
        digest = _digest(code)
        redeemed = state.redeemed.pop(digest, None)
        if redeemed is not None:
            # RFC 6749 §4.1.2: a code used twice revokes the tokens it bought.
            for token_digest in redeemed.tokens:
                if token_digest.startswith("family:"):
                    state.revoke_family(token_digest.removeprefix("family:"))
                state.tokens.pop(token_digest, None)
            log.warning("authorization code replayed; its access tokens are revoked")
            return token_error("invalid_grant", "code already used")
        issued = state.codes.get(digest)
        if issued is None or issued.expires_at <= state.clock():
            return token_error("invalid_grant", "code unknown or expired")
        auth = issued.request
        if form.get("client_id") != auth.client_id:
            return token_error("invalid_grant", "code was issued to another client")
        if form.get("redirect_uri") != auth.redirect_uri:
            return token_error("invalid_grant", "redirect_uri differs from the authorize request")
        verifier = form.get("code_verifier", "")
        if _CODE_VERIFIER.fullmatch(verifier) is None:
            return token_error("invalid_grant", "code_verifier missing or malformed")
        if not hmac.compare_digest(_s256(verifier), auth.code_challenge):
            return token_error("invalid_grant", "code_verifier does not match code_challenge")
        # Only now is the code spent: a failed attempt cannot burn the client's code.
        del state.codes[digest]
        now = state.clock()
        context = issued.context
        scopes = frozenset(auth.scopes)
        family = secrets.token_hex(16) if scopes & _REFRESH_SCOPES else None
        body = issue(auth.client_id, scopes, context, family, auth.scopes)
        state.redeemed[digest] = _Redeemed(
            (_digest(body["access_token"]),),
            now + max(config.token_lifetime_s, config.code_lifetime_s),
        )
        if family is not None:
            # A replayed code must revoke the refresh tokens it bought, too.
            state.redeemed[digest] = _Redeemed(
                (_digest(body["access_token"]), "family:" + family),
                state.redeemed[digest].keep_until,
            )
        if "openid" in auth.scopes:
            body["id_token"] = id_token(auth, issued.user, now)
        return JSONResponse(body, headers=_NO_STORE)

    def issue(
        client_id: str,
        scopes: frozenset[str],
        context: _Context,
        family: str | None,
        order: tuple[str, ...],
    ) -> dict[str, Any]:
        """A token response: a new access token, and a new refresh token when the grant
        has a refresh family (online_access or offline_access was granted)."""
        state = rt.state
        now = state.clock()
        access_token = state.new_token(
            _Token(
                client_id=client_id,
                scopes=scopes,
                patient=context.patient,
                expires_at=now + config.token_lifetime_s,
                family=family,
            )
        )
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": config.token_lifetime_s,
            "scope": " ".join(order),
            "need_patient_banner": True,
            "smart_style_url": f"{config.issuer}/ehr/smart-style.json",
        }
        if family is not None:
            refresh_token = secrets.token_urlsafe(RANDOM_BYTES)
            state.refresh[_digest(refresh_token)] = _Refresh(
                client_id, scopes, context, family, now + REFRESH_TOKEN_LIFETIME_S
            )
            body["refresh_token"] = refresh_token
        if context.patient is not None:
            body["patient"] = context.patient
        if context.encounter is not None:
            body["encounter"] = context.encounter
        if context.app_context is not None:
            body["appContext"] = context.app_context
        return body

    def refresh(form: dict[str, str]) -> JSONResponse:
        """The refresh grant (RFC 6749 §6) with rotation: the token presented is spent,
        a new access token and a new refresh token come back; a spent refresh token
        presented again revokes every token of its family (RFC 9700 §4.14.2)."""
        presented = form.get("refresh_token")
        if not presented:
            return token_error("invalid_request", "refresh_token is required")
        state = rt.state
        state.sweep()
        digest = _digest(presented)
        spent = state.spent_refresh.get(digest)
        if spent is not None:
            state.revoke_family(spent.family)
            log.warning("refresh token reused; its family of tokens is revoked")
            return token_error("invalid_grant", "refresh token already used")
        grant = state.refresh.get(digest)
        if grant is None or grant.expires_at <= state.clock():
            return token_error("invalid_grant", "refresh token unknown or expired")
        if form.get("client_id") != grant.client_id:
            return token_error("invalid_grant", "refresh token was issued to another client")
        asked = form.get("scope")
        scopes = grant.scopes
        if asked is not None:
            wanted = frozenset(asked.split())
            if not wanted <= grant.scopes:
                return token_error("invalid_scope", "a refresh cannot widen the grant")
            scopes = wanted
        del state.refresh[digest]
        state.spent_refresh[digest] = _Spent(grant.family, grant.expires_at)
        body = issue(grant.client_id, scopes, grant.context, grant.family, tuple(sorted(scopes)))
        return JSONResponse(body, headers=_NO_STORE)

    def id_token(auth: _AuthRequest, user: str, now: float) -> str:
        """OpenID Connect Core §2 claims, with SMART's fhirUser when that scope is granted."""
        claims: dict[str, Any] = {
            **dict(clients[auth.client_id].id_token_claims),
            "iss": config.issuer,
            "sub": user,
            "aud": auth.client_id,
            "iat": int(now),
            "exp": int(now) + ID_TOKEN_LIFETIME_S,
        }
        if auth.nonce is not None:
            claims["nonce"] = auth.nonce
        if "fhirUser" in auth.scopes:
            claims["fhirUser"] = f"{config.fhir_base}/{user}"
        return jwt.encode(claims, rt.key, algorithm="RS256", headers={"kid": rt.jwk["kid"]})

    # -- FHIR proxy ------------------------------------------------------------------------

    @app.get("/fhir/metadata")
    async def metadata() -> Response:
        """The upstream CapabilityStatement, as this server: its URL and SMART security."""
        try:
            response = await rt.client().get(f"{upstream}/metadata", headers={"Accept": _FHIR_JSON})
            statement = response.json()
        except (httpx.HTTPError, ValueError):
            return _outcome(502, "transient", "the FHIR server is unavailable")
        if response.status_code != 200 or not isinstance(statement, dict):
            return _outcome(502, "transient", "the FHIR server is unavailable")
        _smart_capability(statement, config)
        return Response(json.dumps(statement), 200, media_type=_FHIR_JSON)

    @app.get("/fhir/{path:path}")
    async def fhir(path: str, request: Request) -> Response:
        """Reads and searches, each checked against the bearer token before it goes upstream."""
        authorization = request.headers.get("authorization", "")
        scheme, _, presented = authorization.partition(" ")
        grant = rt.state.live_token(presented.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            # RFC 6750 §3: say Bearer; add invalid_token when one was presented.
            challenge = 'Bearer error="invalid_token"' if presented else "Bearer"
            return _outcome(
                401, "login", "a valid access token is required", {"WWW-Authenticate": challenge}
            )
        params = request.query_params.multi_items()
        refusal = _refusal(grant, path, params)
        if refusal is not None:
            return _outcome(
                403,
                "forbidden",
                refusal,
                {"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
            )
        url = f"{upstream}/{path}"
        if request.url.query:
            url += "?" + request.url.query
        try:
            # handling=strict: an upstream that ignored an unknown search parameter would
            # silently widen a search the patient check above let through.
            response = await rt.client().get(
                url, headers={"Accept": _FHIR_JSON, "Prefer": "handling=strict"}
            )
        except httpx.HTTPError as exc:
            log.warning("FHIR proxy: upstream failed (%s)", type(exc).__name__)
            return _outcome(502, "transient", "the FHIR server is unavailable")
        headers = {k: v for k in _PASSED_HEADERS if (v := response.headers.get(k)) is not None}
        content = response.content
        if "json" in headers.get("content-type", ""):
            try:
                resource = json.loads(content)
            except ValueError:
                resource = None
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                _rewrite_bundle(resource, upstream, config.fhir_base)
                _filter_bundle(resource, grant)
                content = json.dumps(resource).encode()
        return Response(content, response.status_code, headers=headers)

    # -- EHR pages -------------------------------------------------------------------------

    @app.get("/ehr", response_class=HTMLResponse)
    async def ehr_home() -> HTMLResponse:
        try:
            patients = await upstream_patients()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("EHR patient list: upstream FHIR failed (%s)", type(exc).__name__)
            return _error_page(502, "FHIR server unavailable", "The patient list could not load.")
        rows = "".join(
            f'<tr><td><a href="/ehr/patient/{escape(p["id"])}">{escape(_patient_name(p))}</a></td>'
            f"<td>{escape(str(p.get('gender', '')))}</td>"
            f"<td>{escape(str(p.get('birthDate', '')))}</td></tr>"
            for p in patients
        )
        body = (
            "<h1>Patients</h1>"
            f"<p>Signed in as <code>{escape(config.user)}</code>.</p>"
            "<table><caption>Patients on the FHIR server</caption><thead><tr>"
            '<th scope="col">Name</th><th scope="col">Gender</th>'
            '<th scope="col">Birth date</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
        return _html("Patients", body)

    # The chart frames the registered apps, and this server's own pages on the way
    # (the launch and authorize redirects run inside the frame).
    framed = " ".join(
        sorted({"'self'", config.issuer, *(_origin_of(c.launch_url) for c in config.clients)})
    )
    chart_headers = {
        **_HTML_HEADERS,
        "Content-Security-Policy": _HTML_HEADERS["Content-Security-Policy"]
        + f"; frame-src {framed}",
    }

    @app.get("/ehr/patient/{patient_id}", response_class=HTMLResponse)
    async def ehr_patient(patient_id: str) -> HTMLResponse:
        if not _is_fhir_id(patient_id):
            return _error_page(404, "No such patient", "That is not a patient id.")
        try:
            response = await rt.client().get(
                f"{upstream}/Patient/{patient_id}", headers={"Accept": _FHIR_JSON}
            )
        except httpx.HTTPError:
            return _error_page(502, "FHIR server unavailable", "The chart could not load.")
        if response.status_code == 404:
            return _error_page(404, "No such patient", "The FHIR server has no such patient.")
        try:
            patient = response.json()
        except ValueError:
            patient = None
        if response.status_code != 200 or not isinstance(patient, dict):
            return _error_page(502, "FHIR server unavailable", "The chart could not load.")
        cds = config.cds_service_url
        cards = await fire_patient_view(cds.rstrip("/"), patient_id) if cds else ""
        body = (
            '<section class="chart" aria-labelledby="chart-name">'
            f'<h1 id="chart-name">{escape(_patient_name(patient))}</h1>'
            f"<p>{escape(str(patient.get('gender', 'gender unknown')))} · born "
            f"{escape(str(patient.get('birthDate', 'unknown')))} · id "
            f"<code>{escape(patient_id)}</code></p>"
            '<form method="post" action="/ehr/launch">'
            f"{_hidden('patient', patient_id)}"
            '<button type="submit" id="launch-app">Launch twin-cds</button></form>'
            # Most EHRs show apps inside the chart: the same launch, into a frame.
            '<form method="post" action="/ehr/launch" target="app-frame">'
            f"{_hidden('patient', patient_id)}"
            '<button type="submit" id="launch-app-embedded">Open twin-cds in the chart'
            "</button></form></section>"
            '<iframe name="app-frame" id="app-frame" title="twin-cds in the chart" '
            'style="width:100%;height:40rem;border:1px solid #ccc"></iframe>'
            f"{cards}"
        )
        return _html(_patient_name(patient), body, headers=chart_headers)

    async def fire_patient_view(cds_base: str, patient_id: str) -> str:
        """CDS Hooks 2.0 patient-view to each configured service, side by side."""
        results = await asyncio.gather(
            *(
                call_service(f"{cds_base}/cds-services/{sid}", sid, patient_id)
                for sid in config.cds_services
            ),
            return_exceptions=True,
        )
        sections = []
        for sid, result in zip(config.cds_services, results, strict=True):
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

    async def call_service(url: str, service_id: str, patient_id: str) -> str:
        now = rt.state.clock()
        access_token = rt.state.new_token(
            _Token(
                client_id=CDS_SERVICE_CLIENT_ID,
                scopes=frozenset(CDS_SERVICE_SCOPE.split()),
                patient=patient_id,
                expires_at=now + HOOK_TOKEN_LIFETIME_S,
            )
        )
        hook = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": config.fhir_base,
            "fhirAuthorization": {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": HOOK_TOKEN_LIFETIME_S,
                "scope": CDS_SERVICE_SCOPE,
                "subject": CDS_SERVICE_CLIENT_ID,
                "patient": patient_id,
            },
            "context": {"userId": config.user, "patientId": patient_id},
        }
        headers = {"Accept": "application/json"}
        if rt.cds_key is not None:
            claims = {
                "iss": config.cds_client_iss,
                "aud": url,
                "iat": int(now),
                "exp": int(now) + CDS_JWT_LIFETIME_S,
                "jti": str(uuid.uuid4()),
            }
            signed = jwt.encode(claims, rt.cds_key, algorithm="ES384", headers={"kid": CDS_JWT_KID})
            headers["Authorization"] = f"Bearer {signed}"
        response = await rt.client().post(url, json=hook, headers=headers)
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

    @app.post("/ehr/launch", response_model=None)
    async def ehr_launch(request: Request) -> Response:
        """EHR launch: a launch id bound to one app, then off to the app's launch URL."""
        try:
            form = await _read_form(request)
        except _BadForm as exc:
            return _error_page(400, "Invalid launch", str(exc))
        patient = form.get("patient", "")
        encounter = form.get("encounter")
        if not _is_fhir_id(patient) or (encounter is not None and not _is_fhir_id(encounter)):
            return _error_page(400, "Invalid launch", "patient (and encounter) must be FHIR ids.")
        launch_url = form.get("launch_url", config.clients[0].launch_url)
        target = _without_query(launch_url)
        client = next((c for c in config.clients if _without_query(c.launch_url) == target), None)
        if client is None:
            # Only registered apps are opened: the form must not be an open redirect.
            return _error_page(400, "Invalid launch", "That application is not registered.")
        rt.state.sweep()
        launch_id = secrets.token_urlsafe(RANDOM_BYTES)
        context = _Context(patient, encounter, form.get("app_context"))
        expires = rt.state.clock() + LAUNCH_LIFETIME_S
        rt.state.launches[launch_id] = _Launch(client.client_id, context, expires)
        params = {"iss": config.fhir_base, "launch": launch_id}
        return RedirectResponse(_with_query(launch_url, params), 303)

    return app


def _grantable(scope: str) -> bool:
    return scope in _CONTEXT_SCOPES or _RESOURCE_SCOPE.fullmatch(scope) is not None


def _covers(scopes: frozenset[str], level: str, resource_type: str) -> bool:
    return any(f"{level}/{t}.{p}" in scopes for t in (resource_type, "*") for p in ("rs", "read"))


def _in_compartment(resource_type: str, patient: str, params: list[tuple[str, str]]) -> bool:
    """A search that can only match this patient's data.

    Patient searches must be ``_id={patient}``; others must name the patient with
    ``patient={id}`` (or ``Patient/{id}``) or ``subject=Patient/{id}``. Every patient or
    subject parameter must be exactly that (no modifiers, no comma-separated ORs), since
    repeated parameters are ANDed and so can only narrow the search.
    """
    if resource_type == "Patient":
        if any(k.startswith("_id:") for k, _ in params):
            return False  # _id:not=... would match everyone else
        ids = [v for k, v in params if k == "_id"]
        return bool(ids) and all(v == patient for v in ids)
    allowed = {"patient": {patient, f"Patient/{patient}"}, "subject": {f"Patient/{patient}"}}
    named = False
    for key, value in params:
        base = key.split(":")[0]
        if base in allowed:
            if ":" in key or value not in allowed[base]:
                return False
            named = True
    return named


def _refusal(grant: _Token, path: str, params: list[tuple[str, str]]) -> str | None:
    """Why this token may not make this request, or None when it may."""
    segments = path.split("/")
    resource_type = segments[0]
    if len(segments) > 2 or _FHIR_TYPE.fullmatch(resource_type) is None:
        return "only reads (Type/id) and type-level searches (Type?...) are proxied"
    if len(segments) == 2 and not _is_fhir_id(segments[1]):
        return "not a FHIR resource id"
    if _covers(grant.scopes, "user", resource_type):
        return None
    if not _covers(grant.scopes, "patient", resource_type):
        return f"no granted scope covers {resource_type}"
    if grant.patient is None:
        return "this token has no patient context"
    if len(segments) == 2:
        if resource_type == "Patient" and segments[1] == grant.patient:
            return None
        return "a patient-context token reads only its Patient; search for other resources"
    if not _in_compartment(resource_type, grant.patient, params):
        return "a search must be restricted to the token's patient"
    return None


def _rewrite_url(url: object, upstream: str, public: str) -> object:
    if isinstance(url, str) and (
        url == upstream or url.startswith((upstream + "/", upstream + "?"))
    ):
        return public + url[len(upstream) :]
    return url


def _rewrite_bundle(bundle: dict[str, Any], upstream: str, public: str) -> None:
    """Upstream URLs in a Bundle point at the proxy, so paging goes through it."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and "url" in link:
            link["url"] = _rewrite_url(link["url"], upstream, public)
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict) and "fullUrl" in entry:
            entry["fullUrl"] = _rewrite_url(entry["fullUrl"], upstream, public)


def _filter_bundle(bundle: dict[str, Any], grant: _Token) -> None:
    """Drop entries the token may not see (``_include``/``_revinclude`` can add them)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return

    def visible(entry: object) -> bool:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            return False
        rtype = str(resource.get("resourceType", ""))
        if rtype == "OperationOutcome" or _covers(grant.scopes, "user", rtype):
            return True
        if not _covers(grant.scopes, "patient", rtype):
            return False
        return rtype != "Patient" or resource.get("id") == grant.patient

    bundle["entry"] = [e for e in entries if visible(e)]


def _smart_capability(statement: dict[str, Any], config: SimulatorConfig) -> None:
    """FHIR R4 CapabilityStatement.rest.security for SMART (SMART App Launch 2.x §Conformance)."""
    implementation = statement.get("implementation")
    if isinstance(implementation, dict):
        implementation["url"] = config.fhir_base
    security = {
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "authorize", "valueUri": f"{config.issuer}/authorize"},
                    {"url": "token", "valueUri": f"{config.issuer}/token"},
                ],
            }
        ],
    }
    for rest in statement.get("rest") or []:
        if isinstance(rest, dict) and rest.get("mode") == "server":
            rest["security"] = security


def _oauth_redirect(
    redirect_uri: str, error: _OAuthError, state: str | None, status: int = 302
) -> RedirectResponse:
    params = {"error": error.error, "error_description": error.description, "state": state}
    return RedirectResponse(_with_query(redirect_uri, params), status)


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
                f"{_hidden('patient', patient_id)}{_hidden('launch_url', url)}"
                f"{_hidden('app_context', app_context if isinstance(app_context, str) else None)}"
                f'<button type="submit" class="card-launch">{escape(text)}</button></form>'
            )
        elif urlsplit(url).scheme in ("http", "https"):
            parts.append(
                f'<p><a href="{escape(url)}" rel="noopener noreferrer">{escape(text)}</a></p>'
            )
    parts.append("</article>")
    return "".join(parts)


# --- Running it -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ehr_sim.simulator",
        description="A simulated EHR and SMART authorization server in front of a FHIR server.",
    )
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fhir-upstream", required=True, help="the FHIR server's base URL")
    parser.add_argument("--public-base-url", help="default http://127.0.0.1:PORT")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--redirect-uri", action="append", required=True, help="repeat for several")
    parser.add_argument("--launch-url", required=True, help="the app's SMART launch URL")
    parser.add_argument("--cds-service-url", help="the CDS service base; no cards without it")
    parser.add_argument("--cds-signing-key", type=Path, help="ES384 PEM key for CDS Hooks JWTs")
    parser.add_argument("--cds-client-iss", help="iss of those JWTs")
    parser.add_argument(
        "--token-lifetime", type=int, default=3600, help="access token lifetime, seconds"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.cds_signing_key is None) != (args.cds_client_iss is None):
        parser.error("--cds-signing-key and --cds-client-iss go together")
    config = SimulatorConfig(
        fhir_upstream=args.fhir_upstream,
        public_base_url=args.public_base_url or f"http://127.0.0.1:{args.port}",
        clients=(SimulatedClient(args.client_id, tuple(args.redirect_uri), args.launch_url),),
        cds_service_url=args.cds_service_url,
        cds_signing_key_pem=args.cds_signing_key.read_bytes() if args.cds_signing_key else None,
        cds_client_iss=args.cds_client_iss,
        token_lifetime_s=args.token_lifetime,
    )
    import uvicorn

    from cds_service.ops.log_redaction import install_access_log_redaction

    logging.basicConfig(level=logging.INFO)
    # Codes, states and launch ids travel in URLs: keep them out of the access log.
    install_access_log_redaction()
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, log_level="info")


def start_simulator(
    work_dir: Path,
    port: int,
    *,
    fhir_upstream: str,
    client: SimulatedClient,
    cds_service_url: str | None,
    cds_signing_key_file: Path | None = None,
    cds_client_iss: str | None = None,
    token_lifetime_s: int | None = None,
) -> RunningServer:
    """Start ``python -m ehr_sim.simulator`` on 127.0.0.1 and wait until it answers."""
    from ehr_sim.demo import RunningServer, _wait_until_up

    work_dir = work_dir.resolve()  # every path handed to the child is absolute
    work_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "ehr_sim.simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--fhir-upstream",
        fhir_upstream,
        "--client-id",
        client.client_id,
        "--launch-url",
        client.launch_url,
    ]
    for uri in client.redirect_uris:
        command += ["--redirect-uri", uri]
    if cds_service_url is not None:
        command += ["--cds-service-url", cds_service_url]
    if cds_signing_key_file is not None and cds_client_iss is not None:
        command += ["--cds-signing-key", str(cds_signing_key_file.resolve())]
        command += ["--cds-client-iss", cds_client_iss]
    if token_lifetime_s is not None:
        command += ["--token-lifetime", str(token_lifetime_s)]
    log_path = work_dir / "simulator.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    _wait_until_up(f"{url}/fhir/.well-known/smart-configuration", process, log_path)
    return RunningServer(url, process, log_path)


if __name__ == "__main__":
    main()
