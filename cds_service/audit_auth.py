"""Authentication of auditors: their own issuers, audience and role, apart from CDS clients.

An auditor calls the ``/audit`` API with ``Authorization: Bearer <JWT>`` issued by a
configured auditor issuer (``TWIN_CDS_AUDITORS``), signed with an asymmetric key
(``none`` and HMAC refused before any key is looked at), with ``aud`` equal to
``<public_base_url>/audit``, ``exp``/``iat``/``sub``/``jti`` present, and the role
``auditor`` (claim ``role`` or a member of ``roles``).

A CDS client's token is never an auditor's: an issuer configured as a CDS client is
refused here even if also listed as an auditor issuer, and the audiences differ.

Failures raise ``AuditorUnauthorized`` (401: we do not know who you are) or
``AuditorForbidden`` (403: we know, and you are not an auditor).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet
from pydantic import BaseModel, ConfigDict, Field

ASYMMETRIC = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "EdDSA"}
)
AUDITOR_ROLE = "auditor"


class AuditorUnauthorized(Exception):
    """No valid auditor token: answered with a bare 401."""


class AuditorForbidden(Exception):
    """A valid token without the auditor role: answered with a bare 403."""


class AuditorIssuerConfig(BaseModel):
    """An identity provider whose tokens may carry the auditor role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iss: str = Field(min_length=1)
    jwks: dict[str, Any]
    algorithms: tuple[str, ...] = ("ES384", "RS384", "EdDSA")


@dataclass(frozen=True, slots=True)
class Auditor:
    """Who is reading, as the token proved it; never the token."""

    iss: str
    sub: str
    jti: str | None


class AuditorVerifier:
    def __init__(
        self,
        issuers: tuple[AuditorIssuerConfig, ...],
        *,
        audience: str,
        cds_client_issuers: frozenset[str],
        leeway_s: float = 30.0,
    ) -> None:
        # An issuer that is also a CDS client is dropped: one key must not open both doors.
        self._issuers = {i.iss: i for i in issuers if i.iss not in cds_client_issuers}
        self._keys = {
            i.iss: {str(k.key_id or n): k for n, k in enumerate(PyJWKSet.from_dict(i.jwks).keys)}
            for i in self._issuers.values()
        }
        self._audience = audience
        self._leeway = leeway_s

    def verify(self, authorization: str | None) -> Auditor:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuditorUnauthorized("no bearer token")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuditorUnauthorized(f"malformed token: {type(exc).__name__}") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC:
            raise AuditorUnauthorized(f"algorithm {alg!r} not accepted")
        iss = unverified.get("iss") if isinstance(unverified, dict) else None
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuditorUnauthorized("not an auditor issuer")
        if alg not in issuer.algorithms:
            raise AuditorUnauthorized(f"algorithm {alg} not configured for this issuer")
        key = self._key(issuer.iss, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=issuer.iss,
                leeway=self._leeway,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # TypeError/ValueError: an allowed alg whose family does not fit the key.
            raise AuditorUnauthorized(f"token rejected: {type(exc).__name__}") from exc
        if float(claims["iat"]) > time.time() + self._leeway:
            raise AuditorUnauthorized("token issued in the future")
        roles = claims.get("roles")
        has_role = claims.get("role") == AUDITOR_ROLE or (
            isinstance(roles, list) and AUDITOR_ROLE in roles
        )
        if not has_role:
            raise AuditorForbidden(f"{claims['sub']} does not have the auditor role")
        jti = claims.get("jti")
        return Auditor(issuer.iss, str(claims["sub"]), str(jti) if jti is not None else None)

    def _key(self, iss: str, kid: str | None) -> PyJWK:
        keys = self._keys[iss]
        if kid is None:
            if len(keys) == 1:
                return next(iter(keys.values()))
            raise AuditorUnauthorized("token names no key and the issuer has several")
        found = keys.get(kid)
        if found is None:
            raise AuditorUnauthorized(f"no key {kid!r} for this issuer")
        return found
