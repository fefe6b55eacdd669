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

from dataclasses import dataclass
from typing import Any

from jwt import PyJWK, PyJWKSet
from pydantic import BaseModel, ConfigDict, Field

from cds_service.auth import TokenRejected, decode_verified, read_unverified

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
class _Verified:
    claims: dict[str, Any]
    iss: str


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
            verified = self._verified_claims(token)
        except TokenRejected as exc:
            raise AuditorUnauthorized(str(exc)) from exc
        claims, iss = verified.claims, verified.iss
        roles = claims.get("roles")
        has_role = claims.get("role") == AUDITOR_ROLE or (
            isinstance(roles, list) and AUDITOR_ROLE in roles
        )
        if not has_role:
            raise AuditorForbidden(f"{claims['sub']} does not have the auditor role")
        jti = claims.get("jti")
        return Auditor(iss, str(claims["sub"]), str(jti) if jti is not None else None)

    def _verified_claims(self, token: str) -> _Verified:
        # The same checks as a CDS client's token (cds_service.auth), against the
        # auditor issuers, the auditor audience, and with sub required.
        unverified = read_unverified(token)
        iss = unverified.claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRejected("not an auditor issuer")
        if unverified.alg not in issuer.algorithms:
            raise TokenRejected(f"algorithm {unverified.alg} not configured for this issuer")
        key = self._key(issuer.iss, unverified.header.get("kid"))
        claims = decode_verified(
            token,
            key,
            unverified.alg,
            audience=self._audience,
            issuer=issuer.iss,
            leeway_s=self._leeway,
            require=("iss", "aud", "exp", "iat", "sub"),
        )
        return _Verified(claims, issuer.iss)

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
