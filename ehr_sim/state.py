"""What the simulated EHR is configured with and what it remembers.

The configuration (`SimulatorConfig`, `SimulatedClient`), the grants of this process
(launches, pending picks, codes, tokens, refresh tokens, each with its expiry), and the
`Simulator` every handler gets through ``SimDep`` (FastAPI ``Depends``).
Everything lives in memory in one process, which is what a simulator needs and all it
should be trusted with.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, Request

from ehr_sim.web import FHIR_JSON

#: Random values carry 256 bits; RFC 6749 §10.10 asks ≥ 128 bits for codes and tokens.
RANDOM_BYTES = 32
#: The most patients the picker and the EHR list show: ``Patient?_count=100`` (the brief).
PATIENT_LIST_COUNT = 100


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


@dataclass(frozen=True, slots=True)
class Context:
    """Launch context handed to the app with its token."""

    patient: str | None = None
    encounter: str | None = None
    app_context: str | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    client_id: str
    context: Context
    expires_at: float


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """An authorize request that passed every check, waiting only for its patient."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    state: str
    nonce: str | None


@dataclass(frozen=True, slots=True)
class Pending:
    request: AuthRequest
    offered: frozenset[str]
    expires_at: float


@dataclass(frozen=True, slots=True)
class Code:
    request: AuthRequest
    context: Context
    user: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A code already exchanged: remembered so a replay can revoke what it bought."""

    tokens: tuple[str, ...]
    keep_until: float


@dataclass(frozen=True, slots=True)
class Token:
    client_id: str
    scopes: frozenset[str]
    patient: str | None
    expires_at: float
    #: The refresh-token family this access token came from (None: no refresh token).
    family: str | None = None


@dataclass(frozen=True, slots=True)
class Refresh:
    """A live refresh token: what a new access token from it may carry."""

    client_id: str
    scopes: frozenset[str]
    context: Context
    family: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Spent:
    """A refresh token already rotated: presented again, it revokes its whole family."""

    family: str
    expires_at: float


def hashed(secret: str) -> str:
    """Codes and tokens are kept by their SHA-256, so a dump of the state grants nothing."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GrantState:
    """Launches, pending picks, codes and tokens of this process, each with its expiry.

    One event loop touches it and no handler awaits between a check and its update, so
    a code cannot be exchanged twice concurrently.
    """

    clock: Callable[[], float]
    launches: dict[str, Launch] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    redeemed: dict[str, Redeemed] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Refresh] = field(default_factory=dict)
    spent_refresh: dict[str, Spent] = field(default_factory=dict)

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

    def new_token(self, grant: Token) -> str:
        token = secrets.token_urlsafe(RANDOM_BYTES)
        self.tokens[hashed(token)] = grant
        return token

    def live_token(self, token: str) -> Token | None:
        grant = self.tokens.get(hashed(token))
        if grant is None or grant.expires_at <= self.clock():
            return None
        return grant


@dataclass(slots=True)
class Simulator:
    """What the handlers share. Not frozen: the lifespan sets ``http`` (one pooled client
    for the upstream and the CDS services) and clears it when the app stops."""

    config: SimulatorConfig
    state: GrantState
    key: rsa.RSAPrivateKey
    jwk: dict[str, Any]
    cds_key: ec.EllipticCurvePrivateKey | None
    http: httpx.AsyncClient | None = None

    @property
    def clients(self) -> dict[str, SimulatedClient]:
        """The registered apps by client_id."""
        return {c.client_id: c for c in self.config.clients}

    @property
    def upstream(self) -> str:
        """The real FHIR server's base, without a trailing slash."""
        return self.config.fhir_upstream.rstrip("/")

    def client(self) -> httpx.AsyncClient:
        if self.http is None:
            raise RuntimeError("the simulator's HTTP client exists only while the app runs")
        return self.http


def _simulator(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator


#: The simulator a handler works with: ``sim: SimDep``.
SimDep = Annotated[Simulator, Depends(_simulator)]


async def upstream_patients(sim: Simulator) -> list[dict[str, Any]]:
    """The upstream's patients (the picker and the EHR's list show the same ones)."""
    response = await sim.client().get(
        f"{sim.upstream}/Patient",
        params={"_count": str(PATIENT_LIST_COUNT)},
        headers={"Accept": FHIR_JSON},
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
