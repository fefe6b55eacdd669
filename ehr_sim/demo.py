"""The demo: every part on 127.0.0.1, wired to each other, and what to open printed.

`running_product` starts the FHIR server with the generated patients, the vancomycin
inpatient and the patients with history, the service (with the clinician app and the
auditor console) and the EHR launch simulator in front of the FHIR server; `run_demo` is
what ``twin-cds demo`` runs (``scripts/demo.sh`` installs, then runs it). The integration
tests start the same parts. The service never imports this package.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ehr_sim.history import history_patients
from ehr_sim.patients import generate_patients, vancomycin_patient
from ehr_sim.servers import (
    RunningServer,
    claim_port,
    free_port,
    load_patients,
    start_fhir_server,
    start_service,
)
from ehr_sim.simulator import AUDITOR_CLIENT_ID, start_simulator
from ehr_sim.state import SimulatedClient


def example_request(fhir_base: str, patient_id: str) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": fhir_base,
        "fhirAuthorization": {
            "access_token": "demo-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.read patient/Observation.read",
            "subject": "twin-cds",
        },
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
    }


def _auth_off(_: str) -> dict[str, str]:
    return {"TWIN_CDS_AUTH_REQUIRED": "false"}


@contextlib.contextmanager
def running_demo(
    work_dir: Path,
    *,
    patients: int,
    seed: int,
    port: int,
    fhir_port: int = 0,
    service_env: Callable[[str], dict[str, str]] = _auth_off,
) -> Iterator[tuple[RunningServer, RunningServer, list[str]]]:
    """FHIR server with patients, then the service; ``service_env(fhir_base)`` adds
    settings (the demo turns authentication off; the integration tests configure a
    client with its keys instead)."""
    fhir = start_fhir_server(work_dir, fhir_port)
    service: RunningServer | None = None
    try:
        ids = load_patients(fhir.base_url, generate_patients(patients, seed))
        service = start_service(work_dir, port, fhir.base_url, service_env(fhir.base_url))
        yield fhir, service, ids
    finally:
        if service is not None:
            service.stop()
        fhir.stop()


#: The clinician app's client id at the simulated EHR.
APP_CLIENT_ID = "twin-cds"


@dataclass(frozen=True, slots=True)
class RunningProduct:
    """Everything on 127.0.0.1: the FHIR server, the service (with the app), the EHR."""

    fhir: RunningServer
    service: RunningServer
    ehr: RunningServer
    patients: list[str]
    vancomycin_patient: str
    #: Scenario (statin-start, acute-kidney-injury, stale-panel) -> Patient id: records
    #: with years of history (ehr_sim.history).
    history_patients: dict[str, str] = field(default_factory=dict)

    @property
    def ehr_fhir_base(self) -> str:
        return self.ehr.base_url + "/fhir"


@contextlib.contextmanager
def running_product(
    work_dir: Path,
    *,
    patients: int,
    seed: int,
    port: int,
    ehr_port: int = 0,
    fhir_port: int = 0,
    cds_key_file: Path | None = None,
    cds_jwks: dict[str, Any] | None = None,
    service_env: dict[str, str] | None = None,
    ehr_token_lifetime_s: int | None = None,
    auditor_console: bool = False,
) -> Iterator[RunningProduct]:
    """The FHIR server with generated patients and the vancomycin inpatient, the service,
    and the EHR launch simulator in front of the FHIR server, wired to each other.

    With ``cds_key_file`` (ES384 PEM) and ``cds_jwks`` (its public JWKS) the simulated EHR
    signs its hook calls and the service requires it, as in production; without them
    the service's authentication of CDS clients is off (the demo). ``service_env`` adds
    settings; ``ehr_token_lifetime_s`` shortens the EHR's access tokens (to see them
    refreshed). With ``auditor_console`` the simulated EHR is also the identity provider
    of the service's auditor console (``/audit/ui``), and whoever signs in is an auditor.
    """
    fhir = start_fhir_server(work_dir, fhir_port)
    running: list[RunningServer] = [fhir]
    try:
        ids = load_patients(fhir.base_url, generate_patients(patients, seed))
        (vancomycin_id,) = load_patients(fhir.base_url, [vancomycin_patient()])
        scenarios = history_patients()
        history = dict(
            zip(scenarios, load_patients(fhir.base_url, list(scenarios.values())), strict=True)
        )
        ehr_port = ehr_port or free_port()
        ehr_base = f"http://127.0.0.1:{ehr_port}"
        ehr_fhir = f"{ehr_base}/fhir"
        service_url = f"http://127.0.0.1:{port}"
        # The EHR first: it needs only the service's address, and the service needs the
        # EHR's id_token key when the EHR signs its auditors in.
        ehr = start_simulator(
            work_dir,
            ehr_port,
            fhir_upstream=fhir.base_url,
            client=SimulatedClient(
                APP_CLIENT_ID, (f"{service_url}/app/callback",), f"{service_url}/app/launch"
            ),
            cds_service_url=service_url,
            cds_signing_key_file=cds_key_file,
            cds_client_iss=ehr_base if cds_key_file else None,
            token_lifetime_s=ehr_token_lifetime_s,
            auditor_console=service_url if auditor_console else None,
        )
        running.append(ehr)
        env = {
            "TWIN_CDS_FHIR_SERVER_ALLOWLIST": json.dumps([fhir.base_url, ehr_fhir]),
            "TWIN_CDS_SMART_SERVERS": json.dumps([{"iss": ehr_fhir, "client_id": APP_CLIENT_ID}]),
        }
        if cds_jwks is not None:
            client = {"iss": ehr_base, "jwks": cds_jwks, "fhir_servers": [ehr_fhir, fhir.base_url]}
            env["TWIN_CDS_CLIENTS"] = json.dumps([client])
        else:
            env["TWIN_CDS_AUTH_REQUIRED"] = "false"
        if auditor_console:
            env.update(auditor_console_env(ehr_base))
        service = start_service(work_dir, port, fhir.base_url, {**env, **(service_env or {})})
        running.append(service)
        yield RunningProduct(fhir, service, ehr, ids, vancomycin_id, history)
    finally:
        for server in reversed(running):
            server.stop()


def auditor_console_env(ehr_base: str) -> dict[str, str]:
    """The service's settings that make the simulated EHR at ``ehr_base`` the auditor
    console's identity provider: its JWKS (RS256 id_tokens) as an auditor issuer."""
    jwks = httpx.get(f"{ehr_base}/jwks.json", timeout=10).raise_for_status().json()
    issuer = {"iss": ehr_base, "jwks": jwks, "algorithms": ["RS256"]}
    return {
        "TWIN_CDS_AUDITORS": json.dumps([issuer]),
        "TWIN_CDS_AUDIT_CONSOLE_ISSUER": ehr_base,
        "TWIN_CDS_AUDIT_CONSOLE_CLIENT_ID": AUDITOR_CLIENT_ID,
        # The simulated EHR, like a SMART EHR, wants its FHIR base as the authorize aud.
        "TWIN_CDS_AUDIT_CONSOLE_AUD": f"{ehr_base}/fhir",
    }


def run_demo(
    *, patients: int, seed: int, port: int, fhir_port: int, data_dir: Path, ehr_port: int = 0
) -> None:
    # Each port checked before anything starts: a taken one is one line naming its option.
    port = claim_port(port, "--port")
    fhir_port = claim_port(fhir_port, "--fhir-port")
    ehr_port = claim_port(ehr_port, "--ehr-port")
    data_dir = data_dir.resolve()
    with running_product(
        data_dir,
        patients=patients,
        seed=seed,
        port=port,
        fhir_port=fhir_port,
        ehr_port=ehr_port,
        # The chart's "open in the chart" button shows the app in the EHR's frame.
        service_env={"TWIN_CDS_APP_EMBED_IN_EHR": "true"},
        auditor_console=True,
    ) as product:
        fhir, service = product.fhir, product.service
        ids = product.patients
        body = json.dumps(example_request(fhir.base_url, ids[0]))
        print(f"FHIR server (R4, {len(ids) + 1} generated patients): {fhir.base_url}")
        print(f"CDS Hooks discovery: {service.base_url}/cds-services")
        print(
            f"\nOpen the simulated EHR, pick a patient, launch the app: {product.ehr.base_url}/ehr"
        )
        print(
            "  (the vancomycin inpatient, for the dose simulator: "
            f"{product.ehr.base_url}/ehr/patient/{product.vancomycin_patient})"
        )
        print(f"Standalone launch of the app (patient picker): {service.base_url}/app/launch")
        print(
            f"Auditor console (the audit trail, replay, statistics): {service.base_url}/audit/ui\n"
            "  Sign in with your organisation: the simulated EHR is the auditors' identity\n"
            "  provider here and signs you in as an auditor (its id_token carries role=auditor)."
        )
        print("Patients:", ", ".join(ids))
        for scenario, pid in product.history_patients.items():
            print(f"  with history ({scenario}): {product.ehr.base_url}/ehr/patient/{pid}")
        print("\nTry a patient-view hook that fetches from the FHIR server:\n")
        print(
            f"curl -s -X POST {service.base_url}/cds-services/ascvd-risk "
            f"-H 'Content-Type: application/json' -d '{body}' | python3 -m json.tool\n"
        )
        print("The same body to the PREVENT / PCE / KFRE service:\n")
        print(
            f"curl -s -X POST {service.base_url}/cds-services/cardio-renal-risk "
            f"-H 'Content-Type: application/json' -d '{body}' | python3 -m json.tool\n"
        )
        print("The whole panel's twins from the FHIR server's Bulk Data $export, on Dask:\n")
        print(
            f"TWIN_CDS_FHIR_SERVER_ALLOWLIST='[\"{fhir.base_url}\"]' twin-cds population build "
            f"--bulk-export {fhir.base_url} --out {data_dir}/population\n"
            f"twin-cds population report --in {data_dir}/population "
            f"--out {data_dir}/population/report.html\n"
            f"twin-cds population trial --in {data_dir}/population --intervention statin-moderate "
            "--eligible 'prevent_risk_10y_ascvd >= 0.075'\n"
        )
        print(
            "Authentication of CDS clients is OFF in this demo; production configures "
            "TWIN_CDS_CLIENTS and keeps TWIN_CDS_AUTH_REQUIRED=true."
        )
        print("Press Ctrl-C to stop.", flush=True)
        processes = (service.process, fhir.process, product.ehr.process)
        with contextlib.suppress(KeyboardInterrupt):
            while all(p.poll() is None for p in processes):
                time.sleep(1)
