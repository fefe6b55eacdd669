"""Population twins for real: sekmet (a FHIR server with Bulk Data and SMART Backend
Services) on 127.0.0.1, our $export client authorised by a signed client assertion, the
Dask build, and the patient-view hook on the same patients."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cds_service.pipeline.render import pct
from cds_service.population.bulk import (
    BackendServicesAuth,
    BulkAuthError,
    BulkExportClient,
    BulkJobExpired,
)
from cds_service.population.job import BuildConfig, run_build
from cds_service.settings import Settings
from ehr_sim.patients import generate_patients
from ehr_sim.servers import RunningServer, start_fhir_server
from tests.conftest import hook_request
from tests.support.cli import twin_cds
from tests.support.keys import es384
from twin_cds.app import create_app

pytestmark = pytest.mark.integration

CLIENT_ID = "population-job"
KEY = es384("pop1")
PEM = KEY.pem()


@dataclasses.dataclass
class Ehr:
    server: RunningServer
    patient_ids: list[str]
    group_id: str
    loaded_at: str

    @property
    def base(self) -> str:
        return self.server.base_url


def _auth(scope: str | None = None) -> BackendServicesAuth:
    auth = BackendServicesAuth(CLIENT_ID, PEM, "ES384", "pop1")
    return dataclasses.replace(auth, scope=scope) if scope else auth


@pytest.fixture()
def bulk(ehr: Ehr) -> Iterator[Any]:
    """BulkExportClient(...) for this test, closed after it."""
    made: list[BulkExportClient] = []

    def make(**kw: Any) -> BulkExportClient:
        client = BulkExportClient(ehr.base, **{"auth": _auth(), **kw})
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="module")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ehr]:
    work: Path = tmp_path_factory.mktemp("bulk-ehr")
    server = start_fhir_server(
        work,
        extra_settings={
            "server_auth": {
                "types": ["smart"],
                "smart_clients": [
                    {"client_id": CLIENT_ID, "jwks": KEY.jwks(), "scopes": "system/*.*"}
                ],
            }
        },
    )
    try:
        # Loading needs write access: the same client, asking for everything it may.
        loader = BulkExportClient(server.base_url, auth=_auth("system/*.*"))
        headers = {
            "Authorization": f"Bearer {loader._access_token()}",
            "Content-Type": "application/fhir+json",
        }
        ids = []
        with httpx.Client(timeout=60) as http:
            for bundle in generate_patients(6, seed=17):
                r = http.post(server.base_url, json=bundle, headers=headers)
                r.raise_for_status()
                loc = next(
                    e["response"]["location"]
                    for e in r.json()["entry"]
                    if "/Patient/" in e["response"]["location"]
                    or e["response"]["location"].startswith("Patient/")
                )
                ids.append(loc.split("Patient/")[1].split("/")[0])
            group = {
                "resourceType": "Group",
                "type": "person",
                "actual": True,
                "member": [{"entity": {"reference": f"Patient/{p}"}} for p in ids[:2]],
            }
            r = http.post(f"{server.base_url}/Group", json=group, headers=headers)
            r.raise_for_status()
            group_id = r.json()["id"]
        loader.close()
        yield Ehr(server, ids, group_id, datetime.now(UTC).isoformat())
    finally:
        server.stop()


def test_export_without_a_token_is_refused(ehr: Ehr) -> None:
    """The server wants SMART Backend Services: an anonymous kick-off gets 401."""
    r = httpx.get(
        f"{ehr.base}/Patient/$export",
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert r.status_code == 401


def test_an_unregistered_key_gets_no_token(ehr: Ehr, bulk: Any) -> None:
    """A client assertion signed by another key is refused at the token endpoint."""
    other = es384("pop1").pem()
    client = bulk(auth=BackendServicesAuth(CLIENT_ID, other, "ES384", "pop1"))
    with pytest.raises(BulkAuthError, match="invalid_client"):
        client.kick_off()


def test_patient_export_polls_with_retry_after_and_downloads_ndjson(
    ehr: Ehr, bulk: Any, tmp_path: Path
) -> None:
    """Async kick-off, polling on the server's Retry-After, every patient's NDJSON on disk."""
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        import time

        time.sleep(seconds)

    client = bulk(sleep=sleep)
    result = client.export(tmp_path / "export")
    types = {f.type: f.lines for f in result.files}
    assert types["Patient"] == len(ehr.patient_ids)
    assert types["Observation"] > 0
    # sekmet answers 202 with Retry-After: 1 while the job runs: we waited exactly that.
    assert result.polls >= 2 and waits and set(waits) == {1.0}
    patients = (tmp_path / "export").glob("Patient.*.ndjson")
    ids = {json.loads(line)["id"] for p in patients for line in p.read_text().splitlines()}
    assert ids == set(ehr.patient_ids)


def test_group_export_holds_only_the_groups_members(ehr: Ehr, bulk: Any, tmp_path: Path) -> None:
    """Group/{id}/$export exports the two members and their data, no one else."""
    client = bulk()
    result = client.export(tmp_path / "g", group=ehr.group_id)
    patient_files = [f for f in result.files if f.type == "Patient"]
    ids = {
        json.loads(line)["id"] for f in patient_files for line in f.path.read_text().splitlines()
    }
    assert ids == set(ehr.patient_ids[:2])


def test_since_after_the_load_exports_nothing_old(ehr: Ehr, bulk: Any, tmp_path: Path) -> None:
    """_since = a time after every resource was written: no Patient comes back."""
    client = bulk()
    later = datetime.now(UTC).isoformat()
    result = client.export(tmp_path / "s", since=later)
    assert not [f for f in result.files if f.type == "Patient" and f.lines]


def test_error_file_from_the_server_is_read(ehr: Ehr, bulk: Any, tmp_path: Path) -> None:
    """A kick-off parameter the server ignores comes back in the manifest's error file."""
    client = bulk()
    result = client.export(tmp_path / "e", extra_params={"_elements": "id"})
    assert result.error_files
    assert any("_elements" in e for e in result.errors)


def test_a_deleted_job_is_named_expired(ehr: Ehr, bulk: Any) -> None:
    """Polling a job the server has deleted raises BulkJobExpired (HTTP 404), not a hang."""
    client = bulk()
    status_url = client.kick_off()
    # sekmet checks DELETE against write scopes: the EHR's admin deletes the job.
    admin = bulk(auth=_auth("system/*.*"))
    r = httpx.delete(status_url, headers={"Authorization": f"Bearer {admin._access_token()}"})
    assert r.status_code == 202
    with pytest.raises(BulkJobExpired, match="404"):
        client.wait(status_url, timeout_s=30)


def _prefetch(ehr: Ehr, pid: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}

    def get(path: str) -> dict[str, Any]:
        r = httpx.get(f"{ehr.base}/{path}", headers=headers, timeout=30)
        r.raise_for_status()
        return dict(r.json())

    return {
        "patient": get(f"Patient/{pid}"),
        "observations": get(f"Observation?patient={pid}&_count=1000"),
        "conditions": get(f"Condition?patient={pid}&_count=1000"),
        "medications": get(f"MedicationRequest?patient={pid}&_count=1000"),
    }


def test_population_table_equals_the_patient_view_cards(
    ehr: Ehr, bulk: Any, tmp_path: Path
) -> None:
    """Exported by $export and built on Dask, every patient's numbers equal what the
    cardio-renal-risk hook computes and shows for the same patient on the same day."""
    from distributed import Client, LocalCluster

    today = datetime.now(UTC).date()
    client = bulk()
    export = client.export(tmp_path / "export" / "1")
    config = BuildConfig(
        inputs=(tmp_path / "export" / "1",),
        out=tmp_path / "pop",
        as_of=today,
        progress=False,
        source={"bulkExport": ehr.base, **export.to_json()},
    )
    records: list[dict[str, Any]] = []
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as dask,
    ):
        result = run_build(config, record=lambda b: records.append(b) or 1, client=dask)
    assert result.status == "complete" and records[0]["counts"]["rows"] == len(ehr.patient_ids)
    rows = {r["patient_id"]: r for r in pq.read_table(tmp_path / "pop" / "table").to_pylist()}

    app = create_app(Settings(data_dir=tmp_path / "svc", auth_required=False))
    token = client._access_token()
    assert token is not None
    with TestClient(app) as tc:
        tc.app.state.runtime = dataclasses.replace(tc.app.state.runtime, today=lambda: today)  # type: ignore[attr-defined]
        shown = 0
        for pid in ehr.patient_ids:
            body = hook_request(pid, _prefetch(ehr, pid, token))
            cards = tc.post("/cds-services/cardio-renal-risk", json=body).json()["cards"]
            (audit,) = tc.app.state.runtime.audit.records(patient_id=pid)  # type: ignore[attr-defined]
            row = rows[pid]
            assert row["twin_hash"] == audit.body["twin"]["contentHash"]
            outputs = audit.body.get("outputs") or {}
            for key, value in outputs.items():
                model, output = key.split(".")
                slot = "kfre" if model.startswith("kfre") else model
                assert row[f"{slot}_{output}"] == value, (pid, key)
            if row["prevent_shown"]:
                shown += 1
                assert cards[0]["summary"].startswith(
                    f"10-year cardiovascular risk {pct(row['prevent_risk_10y_cvd'])} (PREVENT)"
                )
    assert shown >= 1


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return twin_cds("population", "build", *args, env=env, timeout=300)


def test_build_from_bulk_export_on_the_command_line(ehr: Ehr, tmp_path: Path) -> None:
    """`population build --bulk-export` with a key file: the export, then the table, and
    the run record names the server and its transactionTime."""
    key = tmp_path / "key.pem"
    key.write_bytes(PEM)
    env = {
        **os.environ,
        "TWIN_CDS_DATA_DIR": str(tmp_path / "data"),
        "TWIN_CDS_FHIR_SERVER_ALLOWLIST": json.dumps([ehr.base]),
    }
    args = [
        "--bulk-export",
        ehr.base,
        "--group",
        ehr.group_id,
        "--client-id",
        CLIENT_ID,
        "--private-key",
        str(key),
        "--kid",
        "pop1",
        "--out",
        str(tmp_path / "pop"),
        "--workers",
        "1",
        "--quiet",
    ]
    done = _cli(args, env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["source"]["bulkExport"] == ehr.base
    assert record["source"]["transactionTime"]
    assert record["counts"]["rows"] == 2  # the group's two members


def test_a_fhir_server_not_allowlisted_is_never_contacted(ehr: Ehr, tmp_path: Path) -> None:
    """Without the server on TWIN_CDS_FHIR_SERVER_ALLOWLIST: exit 2, nothing exported."""
    env = {
        **os.environ,
        "TWIN_CDS_DATA_DIR": str(tmp_path / "data"),
        "TWIN_CDS_FHIR_SERVER_ALLOWLIST": "[]",
    }
    done = _cli(["--bulk-export", ehr.base, "--out", str(tmp_path / "pop")], env)
    assert done.returncode == 2 and "allowlist" in done.stderr
    assert not (tmp_path / "pop" / "export").exists()
