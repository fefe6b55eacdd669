"""The EHR's authorization server, as the clinician app talks to it (SMART App Launch 2.x).

Discovery (``{iss}/.well-known/smart-configuration``, PKCE S256 required), the code
exchange at the token endpoint, and the id_token check (OpenID Connect Core §3.1.3.7).
Every failure is a `LaunchRefused` whose message is safe to show the clinician; the
launch routes (`smart_app.launch`) turn it into a page.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from cds_service.errors import FhirServerNotAllowed
from cds_service.pipeline.fhir_client import check_fhir_server
from cds_service.settings import Settings
from smart_app.errors import AppError

log = logging.getLogger("twin_cds.smart_app")

#: Clock skew allowed on id_token exp/iat.
ID_TOKEN_LEEWAY_S = 30
#: Signature algorithms accepted on an id_token (SMART 2.x: RS256 required; ES384 too).
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]


class LaunchRefused(AppError):
    """A launch or callback we refuse; the message is safe to show the clinician."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = self.status_code = status


@dataclass(frozen=True, slots=True)
class SmartEndpoints:
    authorize: str
    token: str
    issuer: str | None
    jwks_uri: str | None


def _checked_url(url: object, what: str, settings: Settings) -> str:
    """An endpoint from discovery: absolute, https (http only on loopback in development)."""
    if not isinstance(url, str) or not url:
        raise LaunchRefused(f"the EHR's SMART configuration has no {what}", 502)
    try:
        check_fhir_server(
            url, (url,), allow_insecure_loopback=settings.allow_insecure_loopback_fhir
        )
    except FhirServerNotAllowed as exc:
        raise LaunchRefused(f"the EHR's {what} is not acceptable: {exc}", 502) from exc
    return url


async def discover(http: httpx.AsyncClient, iss: str, settings: Settings) -> SmartEndpoints:
    """The EHR's endpoints from ``{iss}/.well-known/smart-configuration`` (SMART 2.x)."""
    url = iss.rstrip("/") + "/.well-known/smart-configuration"
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
        config = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        raise LaunchRefused(
            f"the EHR's SMART configuration could not be read ({type(exc).__name__})", 502
        ) from exc
    if not isinstance(config, dict):
        raise LaunchRefused("the EHR published no SMART configuration", 502)
    methods = config.get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        # SMART 2.x requires S256; without it the code could be replayed by whoever sees it.
        raise LaunchRefused("the EHR does not support PKCE S256; the launch is refused", 502)
    jwks_uri = config.get("jwks_uri")
    issuer = config.get("issuer")
    return SmartEndpoints(
        authorize=_checked_url(
            config.get("authorization_endpoint"), "authorize endpoint", settings
        ),
        token=_checked_url(config.get("token_endpoint"), "token endpoint", settings),
        issuer=issuer if isinstance(issuer, str) else None,
        jwks_uri=_checked_url(jwks_uri, "jwks_uri", settings) if jwks_uri else None,
    )


async def exchange_code(
    http: httpx.AsyncClient, pending: dict[str, Any], code: str, redirect_uri: str
) -> dict[str, Any]:
    try:
        response = await http.post(
            pending["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": pending["client_id"],
                "code_verifier": pending["verifier"],
            },
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise LaunchRefused(f"the EHR's token endpoint failed ({type(exc).__name__})", 502) from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        # The error code is OAuth's (invalid_grant, ...), never a token: safe to show and log.
        log.warning("SMART token exchange refused: %s %s", response.status_code, error)
        raise LaunchRefused(
            f"the EHR refused the authorization code ({error or response.status_code})",
            401,
        )
    return body


async def verify_id_token(
    http: httpx.AsyncClient, pending: dict[str, Any], id_token: object
) -> dict[str, Any]:
    """OpenID Connect Core §3.1.3.7: signature, iss, aud, exp/iat and our nonce."""
    if not isinstance(id_token, str):
        raise LaunchRefused("the EHR sent no id_token for the openid scope", 401)
    if not pending.get("jwks_uri") or not pending.get("issuer"):
        raise LaunchRefused("the EHR publishes no issuer or jwks_uri to check the id_token", 502)
    try:
        response = await http.get(pending["jwks_uri"], headers={"Accept": "application/json"})
        keys = jwt.PyJWKSet.from_dict(response.json())
        kid = jwt.get_unverified_header(id_token).get("kid")
        candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
        if not candidates:
            raise LaunchRefused("the id_token's signing key is not in the EHR's JWKS", 401)
        claims: dict[str, Any] = jwt.decode(
            id_token,
            candidates[0].key,
            algorithms=ID_TOKEN_ALGORITHMS,
            audience=pending["client_id"],
            issuer=pending["issuer"],
            leeway=ID_TOKEN_LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
        raise LaunchRefused(f"the id_token is not valid ({type(exc).__name__})", 401) from exc
    if not hmac.compare_digest(str(claims.get("nonce", "")), pending["nonce"]):
        raise LaunchRefused("the id_token's nonce is not this launch's", 401)
    return claims


def token_lifetime(expires_in: object, longest: int) -> int:
    """The access token's lifetime in seconds (``expires_in``), at most ``longest``."""
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return min(longest, int(expires_in))
    return longest
