"""The simulated EHR's token endpoint (RFC 6749 §4.1.3, §6; RFC 7636 §4.6).

Public clients only; single-use codes whose replay revokes the tokens they bought
(RFC 6749 §4.1.2); refresh tokens rotated on every use, a spent one revoking its whole
family (RFC 9700 §4.14.2); OpenID Connect id_tokens (RS256) signed with the key the
JWKS publishes.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from typing import Any

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cds_service.http.pkce import pkce_challenge
from ehr_sim.state import (
    RANDOM_BYTES,
    AuthRequest,
    Context,
    Redeemed,
    Refresh,
    SimDep,
    Simulator,
    Spent,
    Token,
    hashed,
)
from ehr_sim.web import BadForm, read_form

log = logging.getLogger("twin_cds.simulator")

router = APIRouter()

#: id_token lifetime; OpenID Connect Core §2 leaves it to the issuer, minutes is usual.
ID_TOKEN_LIFETIME_S = 300
#: RFC 7636 §4.1: code_verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / - . _ ~
_CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_REFRESH_SCOPES = frozenset({"online_access", "offline_access"})
#: A refresh token lives as long as an 8-hour shift (online_access: while the user is
#: "online"); each use replaces it with a new one (RFC 9700 §4.14.2, rotation).
REFRESH_TOKEN_LIFETIME_S = 8 * 3600
#: Token responses must not be cached: RFC 6749 §5.1.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# -- token ---------------------------------------------------------------------------


def token_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status, headers=_NO_STORE
    )


@router.post("/token")
async def token(sim: SimDep, request: Request) -> JSONResponse:
    """The token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6), public clients only."""
    try:
        form = await read_form(request)
    except BadForm as exc:
        return token_error("invalid_request", str(exc))
    if form.get("grant_type") == "refresh_token":
        return refresh(sim, form)
    if form.get("grant_type") != "authorization_code":
        return token_error(
            "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
        )
    code = form.get("code")
    if code is None:
        return token_error("invalid_request", "code is required")
    state = sim.state
    state.sweep()
    digest = hashed(code)
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
    if not hmac.compare_digest(pkce_challenge(verifier), auth.code_challenge):
        return token_error("invalid_grant", "code_verifier does not match code_challenge")
    # Only now is the code spent: a failed attempt cannot burn the client's code.
    del state.codes[digest]
    now = state.clock()
    context = issued.context
    scopes = frozenset(auth.scopes)
    family = secrets.token_hex(16) if scopes & _REFRESH_SCOPES else None
    body = issue(sim, auth.client_id, scopes, context, family, auth.scopes)
    state.redeemed[digest] = Redeemed(
        (hashed(body["access_token"]),),
        now + max(sim.config.token_lifetime_s, sim.config.code_lifetime_s),
    )
    if family is not None:
        # A replayed code must revoke the refresh tokens it bought, too.
        state.redeemed[digest] = Redeemed(
            (hashed(body["access_token"]), "family:" + family),
            state.redeemed[digest].keep_until,
        )
    if "openid" in auth.scopes:
        body["id_token"] = id_token(sim, auth, issued.user, now)
    return JSONResponse(body, headers=_NO_STORE)


def issue(
    sim: Simulator,
    client_id: str,
    scopes: frozenset[str],
    context: Context,
    family: str | None,
    order: tuple[str, ...],
) -> dict[str, Any]:
    """A token response: a new access token, and a new refresh token when the grant
    has a refresh family (online_access or offline_access was granted)."""
    state = sim.state
    now = state.clock()
    access_token = state.new_token(
        Token(
            client_id=client_id,
            scopes=scopes,
            patient=context.patient,
            expires_at=now + sim.config.token_lifetime_s,
            family=family,
        )
    )
    body: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": sim.config.token_lifetime_s,
        "scope": " ".join(order),
        "need_patient_banner": True,
        "smart_style_url": f"{sim.config.issuer}/ehr/smart-style.json",
    }
    if family is not None:
        refresh_token = secrets.token_urlsafe(RANDOM_BYTES)
        state.refresh[hashed(refresh_token)] = Refresh(
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


def refresh(sim: Simulator, form: dict[str, str]) -> JSONResponse:
    """The refresh grant (RFC 6749 §6) with rotation: the token presented is spent,
    a new access token and a new refresh token come back; a spent refresh token
    presented again revokes every token of its family (RFC 9700 §4.14.2)."""
    presented = form.get("refresh_token")
    if not presented:
        return token_error("invalid_request", "refresh_token is required")
    state = sim.state
    state.sweep()
    digest = hashed(presented)
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
    state.spent_refresh[digest] = Spent(grant.family, grant.expires_at)
    body = issue(sim, grant.client_id, scopes, grant.context, grant.family, tuple(sorted(scopes)))
    return JSONResponse(body, headers=_NO_STORE)


def id_token(sim: Simulator, auth: AuthRequest, user: str, now: float) -> str:
    """OpenID Connect Core §2 claims, with SMART's fhirUser when that scope is granted."""
    claims: dict[str, Any] = {
        **dict(sim.clients[auth.client_id].id_token_claims),
        "iss": sim.config.issuer,
        "sub": user,
        "aud": auth.client_id,
        "iat": int(now),
        "exp": int(now) + ID_TOKEN_LIFETIME_S,
    }
    if auth.nonce is not None:
        claims["nonce"] = auth.nonce
    if "fhirUser" in auth.scopes:
        claims["fhirUser"] = f"{sim.config.fhir_base}/{user}"
    return jwt.encode(claims, sim.key, algorithm="RS256", headers={"kid": sim.jwk["kid"]})
