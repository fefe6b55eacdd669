"""The demo: a real FHIR R4 server with generated patients, and the service beside it.

Also used by the integration tests, which need the same real parts. The service
never imports this module.

Patients come from ``carebundle`` (seeded, US Core), to which this module adds
what the cardiovascular model needs and carebundle does not emit: a US Core race
extension and a tobacco smoking status Observation (LOINC 72166-2), both drawn from
the same seed so the demo is the same every time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cds_service.audit.log import generate_demo_signing_key
from ehr_sim.history import history_patients

# US Core Race extension, OMB categories (CDC Race & Ethnicity code set, 2.16.840.1.113883.6.238).
_US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_OMB_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
_RACES = (("2106-3", "White"), ("2054-5", "Black or African American"), ("2028-9", "Asian"))
# Smoking status values (SNOMED CT, as in US Core's smoking status value set).
_SMOKING = (
    ("449868002", "Smokes tobacco daily"),
    ("8517006", "Ex-smoker"),
    ("266919005", "Never smoked tobacco"),
)
REFERENCE_DATE = date(2026, 1, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortInUse(RuntimeError):
    """A port asked for is taken: the message is one line naming the option to change."""


def claim_port(port: int, option: str) -> int:
    """``port``, checked free on 127.0.0.1 (0: a free one), or PortInUse naming ``option``."""
    if port == 0:
        return free_port()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUse(
                f"port {port} on 127.0.0.1 is in use ({exc.strerror}); choose another with "
                f"{option} PORT (0 picks a free one)"
            ) from exc
    return port


def generate_patients(count: int, seed: int) -> list[dict[str, Any]]:
    """Transaction bundles for ``count`` adults aged 40-79 (the PCE population)."""
    import carebundle

    rng = random.Random(seed)  # noqa: S311 - seeded synthetic demo data, not security
    bundles = carebundle.generate_cohort(
        count=count, seed=seed, age_range=(40, 79), reference_date=REFERENCE_DATE
    )
    out = []
    for bundle in bundles:
        data = json.loads(carebundle.to_json(bundle))
        _add_race_and_smoking(data, rng)
        out.append(data)
    return out


def _add_race_and_smoking(bundle: dict[str, Any], rng: random.Random) -> None:
    patient_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    code, display = rng.choices(_RACES, weights=(70, 20, 10))[0]
    patient_entry["resource"].setdefault("extension", []).append(
        {
            "url": _US_CORE_RACE,
            "extension": [
                {
                    "url": "ombCategory",
                    "valueCoding": {"system": _OMB_SYSTEM, "code": code, "display": display},
                },
                {"url": "text", "valueString": display},
            ],
        }
    )
    s_code, s_display = rng.choices(_SMOKING, weights=(20, 30, 50))[0]
    smoking = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "social-history",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "72166-2",
                    "display": "Tobacco smoking status",
                }
            ]
        },
        "subject": {"reference": patient_entry["fullUrl"]},
        "effectiveDateTime": f"{REFERENCE_DATE.isoformat()}T09:00:00Z",
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": s_code, "display": s_display}]
        },
    }
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{_uuid_from(rng)}",
            "resource": smoking,
            "request": {"method": "POST", "url": "Observation"},
        }
    )


def _uuid_from(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_LOINC = "http://loinc.org"


def vancomycin_patient(now: datetime | None = None) -> dict[str, Any]:
    """A transaction bundle: an inpatient on vancomycin 1000 mg every 12 h over 1 h for
    two days, with weight, creatinine, a peak and a trough, and a resolved dialysis
    dependence (read as not on dialysis, and the card names the record).

    Times are relative to ``now`` so the demo's dose simulator always has recent doses.
    """
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    first = now - timedelta(hours=48)
    patient_ref = "urn:uuid:6f1c1a52-8d3e-4f8e-9d5a-000000000001"

    def at(hours: float) -> str:
        return (first + timedelta(hours=hours)).isoformat()

    def quantity_obs(
        code: str, display: str, value: float, unit: str, hours: float
    ) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": _LOINC, "code": code, "display": display}]},
            "subject": {"reference": patient_ref},
            "effectiveDateTime": at(hours),
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }

    vancomycin = {"coding": [{"system": _RXNORM, "code": "11124", "display": "vancomycin"}]}
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "name": [{"given": ["Victor"], "family": "Vanko"}],
            "gender": "male",
            "birthDate": (now.date() - timedelta(days=int(62 * 365.25))).isoformat(),
        },
        quantity_obs("29463-7", "Body weight", 82.0, "kg", -6),
        quantity_obs("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 1.1, "mg/dL", -6),
        quantity_obs("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 1.2, "mg/dL", 30),
        {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "resolved",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": "Z99.2",
                        "display": "Dependence on renal dialysis",
                    }
                ]
            },
            "subject": {"reference": patient_ref},
        },
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": vancomycin,
            "subject": {"reference": patient_ref},
            "authoredOn": at(-1),
        },
    ]
    for k in range(4):  # 0, 12, 24, 36 h
        resources.append(
            {
                "resourceType": "MedicationAdministration",
                "status": "completed",
                "medicationCodeableConcept": vancomycin,
                "subject": {"reference": patient_ref},
                "effectivePeriod": {"start": at(12 * k), "end": at(12 * k + 1)},
                "dosage": {"dose": {"value": 1000, "unit": "mg"}},
            }
        )
    resources.append(quantity_obs("4090-7", "Vancomycin [Mass/volume] peak", 27.5, "mg/L", 38))
    resources.append(quantity_obs("4092-3", "Vancomycin [Mass/volume] trough", 12.5, "mg/L", 47.5))
    entries = []
    for i, res in enumerate(resources):
        full_url = patient_ref if i == 0 else f"urn:uuid:6f1c1a52-8d3e-4f8e-9d5a-{i + 1:012d}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": res,
                "request": {"method": "POST", "url": res["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass(frozen=True, slots=True)
class RunningServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early; see {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start in 60 s; see {log_path}")


def start_fhir_server(
    work_dir: Path, port: int = 0, extra_settings: dict[str, Any] | None = None
) -> RunningServer:
    """Start a sekmet FHIR R4 server (SQLite) on 127.0.0.1 and wait until it answers.

    ``extra_settings`` are merged into sekmet's settings (e.g. ``server_auth`` for SMART
    Backend Services clients)."""
    port = port or free_port()
    # Absolute: the server runs in work_dir, where a relative path would name another
    # file, and it would then start on its defaults (every interface, port 8090).
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}/fhir"
    settings = work_dir / "sekmet-settings.json"  # JSON is YAML, so sekmet reads it
    settings.write_text(
        json.dumps(
            {
                "base_url": base_url,
                "host": "127.0.0.1",
                "port": port,
                "data_dir": str(work_dir / "fhir-data"),
                "simulator": {"enabled": False},
                "log_inbound": False,
                "validation": {"inbound": "warn"},
                **(extra_settings or {}),
            }
        )
    )
    log_path = work_dir / "fhir-server.log"
    env = {**os.environ, "SEKMET_CONFIG": str(settings)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from sekmet.cli import app; app()", "serve"],
            cwd=work_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    _wait_until_up(f"{base_url}/metadata", process, log_path)
    return RunningServer(base_url, process, log_path)


def load_patients(base_url: str, bundles: list[dict[str, Any]]) -> list[str]:
    """POST each transaction bundle; return the server's Patient ids in order."""
    ids = []
    with httpx.Client(timeout=60) as client:
        for bundle in bundles:
            r = client.post(
                base_url, json=bundle, headers={"Content-Type": "application/fhir+json"}
            )
            r.raise_for_status()
            locations = [e["response"]["location"] for e in r.json()["entry"]]
            patient = next(loc for loc in locations if "/Patient/" in loc)
            ids.append(patient.split("/Patient/")[1].split("/")[0])
    return ids


def start_service(
    work_dir: Path, port: int, fhir_base: str, extra_env: dict[str, str] | None = None
) -> RunningServer:
    """Start ``twin-cds serve`` under uvicorn on 127.0.0.1, allowed to read ``fhir_base``."""
    work_dir = work_dir.resolve()  # every path handed to the child is absolute
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "service.log"
    env = {
        **os.environ,
        "TWIN_CDS_DATA_DIR": str(work_dir / "service-data"),
        "TWIN_CDS_FHIR_SERVER_ALLOWLIST": json.dumps([fhir_base]),
        "TWIN_CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        # A demo key signs the audit checkpoints (made once, logged as a DEMO key).
        "TWIN_CDS_AUDIT_SIGNING_KEY_FILE": str(generate_demo_signing_key(work_dir / "keys")),
        **(extra_env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "twin_cds.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_until_up(f"{url}/cds-services", process, log_path)
    return RunningServer(url, process, log_path)


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
) -> Iterator[RunningProduct]:
    """The FHIR server with generated patients and the vancomycin inpatient, the service,
    and the EHR launch simulator in front of the FHIR server, wired to each other.

    With ``cds_key_file`` (ES384 PEM) and ``cds_jwks`` (its public JWKS) the simulated EHR
    signs its hook calls and the service requires it, as in production; without them
    the service's authentication of CDS clients is off (the demo). ``service_env`` adds
    settings; ``ehr_token_lifetime_s`` shortens the EHR's access tokens (to see them
    refreshed).
    """
    from ehr_sim.simulator import SimulatedClient, start_simulator

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
        env = {
            "TWIN_CDS_FHIR_SERVER_ALLOWLIST": json.dumps([fhir.base_url, ehr_fhir]),
            "TWIN_CDS_SMART_SERVERS": json.dumps([{"iss": ehr_fhir, "client_id": APP_CLIENT_ID}]),
        }
        if cds_jwks is not None:
            client = {"iss": ehr_base, "jwks": cds_jwks, "fhir_servers": [ehr_fhir, fhir.base_url]}
            env["TWIN_CDS_CLIENTS"] = json.dumps([client])
        else:
            env["TWIN_CDS_AUTH_REQUIRED"] = "false"
        service = start_service(work_dir, port, fhir.base_url, {**env, **(service_env or {})})
        running.append(service)
        ehr = start_simulator(
            work_dir,
            ehr_port,
            fhir_upstream=fhir.base_url,
            client=SimulatedClient(
                APP_CLIENT_ID,
                (f"{service.base_url}/app/callback",),
                f"{service.base_url}/app/launch",
            ),
            cds_service_url=service.base_url,
            cds_signing_key_file=cds_key_file,
            cds_client_iss=ehr_base if cds_key_file else None,
            token_lifetime_s=ehr_token_lifetime_s,
        )
        running.append(ehr)
        yield RunningProduct(fhir, service, ehr, ids, vancomycin_id, history)
    finally:
        for server in reversed(running):
            server.stop()


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
