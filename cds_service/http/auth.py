"""Authentication of CDS clients (CDS Hooks 2.0 §Trusting CDS Clients).

Every call carries ``Authorization: Bearer <JWT>`` signed by the EHR. We accept
only asymmetric algorithms (ES384/RS384 by default, ES256/RS256 when configured):
``none`` and every HMAC algorithm are refused before any key is looked at, so a
token "signed" with a public key as an HMAC secret never verifies. The issuer must
be a configured client; its keys come from configuration or from a ``jku`` that is
itself on that client's allowlist. ``aud`` must equal the exact URL called, ``exp``,
``iat`` and ``nbf`` are checked with a small leeway, and a ``jti`` is accepted once
(the replay cache lives in the store, so it holds across workers).

Every failure raises ``Unauthorized``; the HTTP edge answers it with a bare 401.
The reason is kept for the operator's log and never sent to the caller.

Work done before the signature is known to be good is bounded: one ``Authorization``
header (a second one is refused, so two parsers can never disagree on which counts),
its scheme matched case-insensitively (RFC 7235 §2.1), and a token of at most
``MAX_TOKEN_BYTES`` refused before it is base64-decoded. The checks that can block (the
signature, and the replay cache's write, which may wait on a database lock) run in a
worker thread, so one slow token never stalls the other calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.to_thread
import httpx
import jwt
from jwt import PyJWK, PyJWKSet
from pydantic import BaseModel, ConfigDict, Field

from cds_service.errors import ServiceError, Unauthorized
from cds_service.http.replay_cache import (
    PostgresReplayCache,
    ReplayCache,
    ReplayCacheUnavailable,
    SqlReplayCache,
)

ASYMMETRIC = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "EdDSA"}
)
DEFAULT_ALGORITHMS = ("ES384", "RS384")
JWKS_TTL_S = 300.0
# A kid we have not seen triggers at most one JWKS refetch per this many seconds,
# so a stream of forged kids cannot make us hammer the EHR's key endpoint.
JWKS_REFETCH_MIN_INTERVAL_S = 10.0
#: Longest bearer token read at all. A CDS Hooks JWT (header, a handful of claims, an
#: ES384/RS384 signature) is well under 2 KiB; 8 KiB leaves room for an RS512 signature
#: and a few extra claims. A longer one is refused before any base64 or JSON work (an
#: unauthenticated 32 MB token took 12 s of the event loop before this cap).
MAX_TOKEN_BYTES = 8 * 1024


class TokenRejected(ServiceError):
    """A JWT that fails a check shared by CDS-client and auditor tokens; the caller maps
    it to its own answer (401) and keeps the reason for the operator's log."""


@dataclass(frozen=True, slots=True)
class UnverifiedJwt:
    """Header and claims read before the signature is checked: for choosing the key only."""

    header: dict[str, Any]
    claims: dict[str, Any]
    alg: str


def bearer_token(authorization: str | Sequence[str] | None) -> str:
    """The token of the one ``Authorization: Bearer`` header, or TokenRejected.

    ``authorization`` is every value of the header as received: two of them are refused
    (a proxy and the service could each pick a different one). The scheme is
    case-insensitive (RFC 7235 §2.1); the token's length is capped before any decoding.
    """
    values = [authorization] if isinstance(authorization, str) else list(authorization or ())
    if not values:
        raise TokenRejected("no bearer token")
    if len(values) > 1:
        raise TokenRejected(f"{len(values)} Authorization headers")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise TokenRejected("not a bearer token")
    token = token.strip()
    if not token:
        raise TokenRejected("no bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected(f"token of {len(token)} characters, over {MAX_TOKEN_BYTES}")
    return token


def read_unverified(token: str, allowed_algorithms: frozenset[str] = ASYMMETRIC) -> UnverifiedJwt:
    """Header and claims of a token whose algorithm is asymmetric, or TokenRejected.

    ``none`` and every HMAC algorithm are refused before any key is looked at: with HS*
    the "secret" would be whatever key we hold for the issuer, which is public.
    """
    if len(token) > MAX_TOKEN_BYTES:
        # Also here, for callers that did not come through bearer_token.
        raise TokenRejected(f"token over {MAX_TOKEN_BYTES} characters")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenRejected(f"malformed token: {type(exc).__name__}") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed_algorithms:
        raise TokenRejected(f"algorithm {alg!r} not accepted")
    return UnverifiedJwt(header, claims if isinstance(claims, dict) else {}, alg)


def decode_verified(
    token: str,
    key: PyJWK,
    alg: str,
    *,
    audience: str,
    issuer: str,
    leeway_s: float,
    require: tuple[str, ...],
) -> dict[str, Any]:
    """The verified claims, or TokenRejected: signature, aud, iss, exp, nbf, iat."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=leeway_s,
            options={"require": list(require), "strict_aud": False},
        )
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        # TypeError/ValueError: an allowed alg whose family does not fit the key (an
        # RS384 header against an EC key), which PyJWT reports outside PyJWTError.
        raise TokenRejected(f"token rejected: {type(exc).__name__}") from exc
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise TokenRejected("audience mismatch")
    if float(claims["iat"]) > time.time() + leeway_s:
        raise TokenRejected("token issued in the future")
    return claims


class CdsClientConfig(BaseModel):
    """One EHR allowed to call us: its issuer, keys, FHIR servers and tenant."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    iss: str = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    jku_allowlist: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()
    tenant: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """Who called, as the token proved it. Never holds the token itself."""

    iss: str
    jti: str
    tenant: str | None
    sub: str | None
    config: CdsClientConfig


class JtiCache(Protocol):
    def first_use(self, iss: str, jti: str, expires_at: float) -> bool: ...

    def close(self) -> None: ...


@dataclass
class _CachedJwks:
    keys: dict[str, PyJWK]
    fetched_at: float


@dataclass
class JwksCache:
    """Keys fetched from allowlisted jku URLs, kept for a while and refetched on rotation."""

    http: httpx.AsyncClient
    _by_url: dict[str, _CachedJwks] = field(default_factory=dict)

    async def key(self, url: str, kid: str | None) -> PyJWK:
        cached = self._by_url.get(url)
        now = time.monotonic()
        if cached is None or self._refetch(cached, kid, now):
            cached = _CachedJwks(await self._fetch(url), now)
            self._by_url[url] = cached
        found = _pick(cached.keys, kid)
        if found is None:
            raise Unauthorized(f"no key {kid!r} at {url}")
        return found

    @staticmethod
    def _refetch(cached: _CachedJwks, kid: str | None, now: float) -> bool:
        age = now - cached.fetched_at
        if age > JWKS_TTL_S:
            return True
        # An unknown kid may mean the EHR rotated its keys: look again, but not often.
        return _pick(cached.keys, kid) is None and age > JWKS_REFETCH_MIN_INTERVAL_S

    async def _fetch(self, url: str) -> dict[str, PyJWK]:
        try:
            response = await self.http.get(url, timeout=2.0)
            response.raise_for_status()
            return _keys(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise Unauthorized(f"JWKS at {url} unavailable: {type(exc).__name__}") from exc


def _keys(jwks: dict[str, Any]) -> dict[str, PyJWK]:
    keyset = PyJWKSet.from_dict(jwks)
    return {str(k.key_id or i): k for i, k in enumerate(keyset.keys)}


def _pick(keys: dict[str, PyJWK], kid: str | None) -> PyJWK | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class ClientVerifier:
    """Verifies a CDS client's JWT against the configured clients."""

    def __init__(
        self,
        clients: tuple[CdsClientConfig, ...],
        replay: JtiCache,
        jwks: JwksCache,
        *,
        leeway_s: float = 30.0,
        max_lifetime_s: float = 600.0,
    ) -> None:
        self._clients = {c.iss: c for c in clients}
        self._static = {c.iss: _keys(c.jwks) for c in clients if c.jwks}
        self._replay = replay
        self._jwks = jwks
        self._leeway = leeway_s
        self._max_lifetime = max_lifetime_s

    async def verify(
        self, authorization: str | Sequence[str] | None, audience: str
    ) -> VerifiedClient:
        """``authorization``: every value of the Authorization header, as received."""
        try:
            return await self._verify(bearer_token(authorization), audience)
        except TokenRejected as exc:
            raise Unauthorized(str(exc)) from exc

    async def _verify(self, token: str, audience: str) -> VerifiedClient:
        unverified = read_unverified(token)
        iss = unverified.claims.get("iss")
        client = self._clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise TokenRejected("unknown issuer")
        if unverified.alg not in client.algorithms:
            raise TokenRejected(f"algorithm {unverified.alg} not configured for this issuer")
        key = await self._key_for(client, unverified.header)
        # The signature check and the replay cache's write (which may wait on a
        # database lock) run in a worker thread: the event loop keeps answering.
        return await anyio.to_thread.run_sync(
            self._checked, token, key, unverified.alg, audience, client
        )

    def _checked(
        self, token: str, key: PyJWK, alg: str, audience: str, client: CdsClientConfig
    ) -> VerifiedClient:
        verified = decode_verified(
            token,
            key,
            alg,
            audience=audience,
            issuer=client.iss,
            leeway_s=self._leeway,
            require=("iss", "aud", "exp", "iat", "jti"),
        )
        # A per-call authentication JWT lives minutes; a token valid for days would
        # outlive the jti replay cache's purpose. Our policy, a setting.
        if float(verified["exp"]) - float(verified["iat"]) > self._max_lifetime:
            raise TokenRejected(f"token lifetime over {self._max_lifetime:.0f} s")
        if client.tenant is not None and verified.get("tenant") != client.tenant:
            raise TokenRejected("tenant mismatch")
        jti = str(verified["jti"])
        if not self._replay.first_use(client.iss, jti, float(verified["exp"])):
            raise TokenRejected("jti replayed")
        return VerifiedClient(client.iss, jti, verified.get("tenant"), verified.get("sub"), client)

    async def _key_for(self, client: CdsClientConfig, header: dict[str, Any]) -> PyJWK:
        kid = header.get("kid")
        # Keys configured inline (shared out of band, CDS Hooks 2.0) win: a client that
        # always sends a jku (the public sandbox does) can still be configured with its
        # key, and that jku is then never fetched.
        static = self._static.get(client.iss)
        if static:
            found = _pick(static, kid)
            if found is None:
                raise Unauthorized(f"no configured key {kid!r}")
            return found
        jku = header.get("jku")
        if jku is not None:
            if jku not in client.jku_allowlist:
                raise Unauthorized("jku not on the issuer's allowlist")
            return await self._jwks.key(str(jku), kid)
        if client.jku_allowlist:
            return await self._jwks.key(client.jku_allowlist[0], kid)
        raise Unauthorized("no keys configured for issuer")


def parse_clients(text: str) -> tuple[CdsClientConfig, ...]:
    """Clients from JSON text (a list of objects), as TWIN_CDS_CLIENTS holds them."""
    return tuple(CdsClientConfig.model_validate(c) for c in json.loads(text))


# The replay cache's classes, where the app and the tests have always found them.
__all__ = [
    "PostgresReplayCache",
    "ReplayCache",
    "ReplayCacheUnavailable",
    "SqlReplayCache",
]
