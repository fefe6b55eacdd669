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

This module builds the app and runs it; each part is its own module: `state` (the
configuration, the grants, the `Simulator` handlers get by ``Depends``), `authorization`
(discovery, authorize, the patient picker), `tokens` (the token endpoint), `fhir_proxy`,
`chart` (the EHR's pages and its CDS Hooks calls) and `web` (forms, pages, FHIR errors).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from ehr_sim import authorization, chart, fhir_proxy, tokens
from ehr_sim.authorization import public_jwk
from ehr_sim.servers import RunningServer, wait_until_up
from ehr_sim.state import GrantState, SimulatedClient, Simulator, SimulatorConfig

#: RSA modulus for the id_token key: NIST SP 800-57 Part 1 Rev. 5 (112-bit security).
RSA_KEY_BITS = 2048
#: Outbound calls (upstream FHIR, CDS services) give up after this; the demo is local.
OUTBOUND_TIMEOUT_S = 10.0


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
    sim = Simulator(config, GrantState(clock), key, public_jwk(key), _load_cds_key(config))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            transport=transport, timeout=OUTBOUND_TIMEOUT_S, follow_redirects=False
        ) as http:
            sim.http = http
            try:
                yield
            finally:
                sim.http = None

    app = FastAPI(
        title="EHR simulator",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.state.simulator = sim
    # Discovery before the proxy: its catch-all route would take /fhir/.well-known too.
    for part in (authorization, tokens, chart, fhir_proxy):
        app.include_router(part.router)
    return app


# --- Running it -----------------------------------------------------------------------

#: The auditor console's client id: the service's default (TWIN_CDS_AUDIT_CONSOLE_CLIENT_ID).
AUDITOR_CLIENT_ID = "twin-cds-audit-console"


def auditor_console_client(service_url: str) -> SimulatedClient:
    """The auditor console of the service at ``service_url``, registered as an OpenID
    Connect client whose users' id_tokens carry ``role: auditor``: in the demo, whoever
    signs in to the console through this EHR is an auditor."""
    base = service_url.rstrip("/")
    return SimulatedClient(
        AUDITOR_CLIENT_ID,
        (f"{base}/audit/ui/callback",),
        f"{base}/audit/ui",
        id_token_claims=(("role", "auditor"),),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ehr_sim.simulator",
        description=(
            "A simulated EHR and SMART authorization server in front of a FHIR server. "
            "`twin-cds demo` and the tests start it (start_simulator); to run the demo, "
            "use `twin-cds demo`."
        ),
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
    parser.add_argument(
        "--auditor-console",
        metavar="SERVICE_URL",
        help="a twin-cds service whose auditor console signs in here; its users are auditors",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.cds_signing_key is None) != (args.cds_client_iss is None):
        parser.error("--cds-signing-key and --cds-client-iss go together")
    clients = [SimulatedClient(args.client_id, tuple(args.redirect_uri), args.launch_url)]
    if args.auditor_console:
        clients.append(auditor_console_client(args.auditor_console))
    config = SimulatorConfig(
        fhir_upstream=args.fhir_upstream,
        public_base_url=args.public_base_url or f"http://127.0.0.1:{args.port}",
        clients=tuple(clients),
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
    auditor_console: str | None = None,
) -> RunningServer:
    """Start ``python -m ehr_sim.simulator`` on 127.0.0.1 and wait until it answers.

    With ``auditor_console`` (a service's base URL) the simulator is also the identity
    provider of that service's auditor console (`auditor_console_client`)."""
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
    if auditor_console is not None:
        command += ["--auditor-console", auditor_console]
    log_path = work_dir / "simulator.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/fhir/.well-known/smart-configuration", process, log_path)
    return RunningServer(url, process, log_path)


if __name__ == "__main__":
    main()
