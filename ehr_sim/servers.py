"""The real servers the demo and the integration tests start on 127.0.0.1: a FHIR R4
server (sekmet, SQLite), the service (``twin-cds serve`` under uvicorn), each a child
process with its log file, and the ports they take.

The simulated EHR is started the same way (`ehr_sim.simulator.start_simulator`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cds_service.audit.log import generate_demo_signing_key


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
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


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A child process serving ``base_url``, and where its output goes."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll ``url`` until it answers below 500; the child's log is named if it does not."""
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
    wait_until_up(f"{base_url}/metadata", process, log_path)
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
    wait_until_up(f"{url}/cds-services", process, log_path)
    return RunningServer(url, process, log_path)
