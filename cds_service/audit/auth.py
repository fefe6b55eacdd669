"""Authentication of auditors: their own issuers, audience and role, apart from CDS clients.

An auditor calls the ``/audit`` API with ``Authorization: Bearer <JWT>`` issued by a
configured auditor issuer (``TWIN_CDS_AUDITORS``), signed with an asymmetric key
(``none`` and HMAC refused before any key is looked at), with ``aud`` equal to
``<public_base_url>/audit``, ``exp``/``iat``/``sub``/``jti`` present, and the role
``auditor`` (claim ``role`` or a member of ``roles``).

An auditor token is for one call: its ``jti`` is accepted once (the same replay cache as
CDS client tokens, so it holds across workers and replicas), and ``exp - iat`` may not
exceed ``auditor_token_max_lifetime_s`` (1 hour by default): a leaked token is worth one
read within the hour, not a century of them. An issuer configured with a ``tenant``
reads that tenant's records alone; a token whose ``tenant`` claim names another tenant
is refused.

A CDS client's token is never an auditor's: an issuer configured as a CDS client is
refused here even if also listed as an auditor issuer, and the audiences differ.

Failures raise ``AuditorUnauthorized`` (401: we do not know who you are) or
``AuditorForbidden`` (403: we know, and you are not an auditor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jwt import PyJWK, PyJWKSet
from pydantic import BaseModel, ConfigDict, Field

from cds_service.errors import AuditorForbidden, AuditorUnauthorized
from cds_service.http.auth import (
    JtiCache,
    TokenRejected,
    bearer_token,
    decode_verified,
    read_unverified,
)

AUDITOR_ROLE = "auditor"


class AuditorIssuerConfig(BaseModel):
    """An identity provider whose tokens may carry the auditor role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iss: str = Field(min_length=1)
    jwks: dict[str, Any]
    algorithms: tuple[str, ...] = ("ES384", "RS384", "EdDSA")
    #: The one tenant whose records this issuer's auditors read; None: the deployment's
    #: own auditors, who read every tenant's.
    tenant: str | None = None


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
    #: Their reads are narrowed to this tenant's records (None: all records).
    tenant: str | None = None


class AuditorVerifier:
    def __init__(
        self,
        issuers: tuple[AuditorIssuerConfig, ...],
        *,
        audience: str,
        cds_client_issuers: frozenset[str],
        replay: JtiCache,
        leeway_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
    ) -> None:
        # An issuer that is also a CDS client is dropped: one key must not open both doors.
        self._issuers = {i.iss: i for i in issuers if i.iss not in cds_client_issuers}
        self._keys = {
            i.iss: {str(k.key_id or n): k for n, k in enumerate(PyJWKSet.from_dict(i.jwks).keys)}
            for i in self._issuers.values()
        }
        self._audience = audience
        self._leeway = leeway_s
        self._replay = replay
        self._max_lifetime = max_lifetime_s

    def verify(self, authorization: str | Sequence[str] | None) -> Auditor:
        """``authorization``: every value of the Authorization header, as received."""
        try:
            verified = self._verified_claims(bearer_token(authorization))
        except TokenRejected as exc:
            raise AuditorUnauthorized(str(exc)) from exc
        claims, iss = verified.claims, verified.iss
        roles = claims.get("roles")
        has_role = claims.get("role") == AUDITOR_ROLE or (
            isinstance(roles, list) and AUDITOR_ROLE in roles
        )
        if not has_role:
            raise AuditorForbidden(f"{claims['sub']} does not have the auditor role")
        jti = str(claims["jti"])
        # Namespaced apart from CDS clients' jti values in the shared replay cache.
        if not self._replay.first_use(f"auditor:{iss}", jti, float(claims["exp"])):
            raise AuditorUnauthorized("auditor token jti replayed")
        return Auditor(iss, str(claims["sub"]), jti, self._issuers[iss].tenant)

    def _verified_claims(self, token: str) -> _Verified:
        # The same checks as a CDS client's token (cds_service.http.auth), against the
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
            require=("iss", "aud", "exp", "iat", "sub", "jti"),
        )
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > self._max_lifetime:
            raise TokenRejected(
                f"auditor token lifetime {lifetime:.0f} s over {self._max_lifetime:.0f} s"
            )
        claimed = claims.get("tenant")
        if claimed is not None and claimed != issuer.tenant:
            raise TokenRejected(f"tenant {claimed!r} is not this issuer's")
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
