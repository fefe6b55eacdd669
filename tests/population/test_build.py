"""The population build on Dask: bad input named and counted, reruns finish only what is
missing, incremental exports replace older versions, and the run record is chained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cds_service.audit.sql import SqliteAuditLog
from cds_service.population import job
from cds_service.population.job import BuildConfig, run_build
from tests.support.fhir import obs, patient, smoking

AS_OF = date(2026, 6, 1)
WHEN = "2026-03-01T09:00:00Z"
PIDS = [f"pt{i}" for i in range(8)]


@pytest.fixture(scope="module")
def dask() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _lines(resources: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def _write(directory: Path, *, extra_observations: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    patients = [patient(pid, gender="male", birth="1966-01-01", race=["2106-3"]) for pid in PIDS]
    observations = [
        o
        for pid in PIDS
        for o in (
            obs(f"{pid}-tc", "2093-3", 210, "mg/dL", WHEN, pid=pid),
            obs(f"{pid}-hdl", "2085-9", 45, "mg/dL", WHEN, pid=pid),
            obs(f"{pid}-sbp", "8480-6", 150, "mm[Hg]", WHEN, pid=pid),
            obs(f"{pid}-egfr", "98979-8", 80, "mL/min/{1.73_m2}", WHEN, pid=pid),
            obs(f"{pid}-bmi", "39156-5", 27.0, "kg/m2", WHEN, pid=pid),
            {
                **smoking(f"{pid}-smk", "266919005", WHEN),
                "subject": {"reference": f"Patient/{pid}"},
            },
        )
    ]
    (directory / "Patient.ndjson").write_text(_lines(patients))
    (directory / "Observation.ndjson").write_text(_lines(observations) + extra_observations)
    return directory


def _config(inputs: tuple[Path, ...], out: Path) -> BuildConfig:
    # Small partitions so that eight patients spread over several.
    return BuildConfig(inputs=inputs, out=out, as_of=AS_OF, progress=False, partition_bytes=2000)


def test_bad_lines_and_unknown_patients_are_named_and_counted(dask: Any, tmp_path: Path) -> None:
    """A non-JSON line, a line without resourceType and an Observation of a patient not in
    the export are counted and named; every known patient still gets a row."""
    stray = obs("x1", "2093-3", 200, "mg/dL", WHEN, pid="nobody")
    bad = 'this is not json\n{"id": "no-type"}\n' + json.dumps(stray) + "\n"
    src = _write(tmp_path / "in", extra_observations=bad)
    result = run_build(_config((src,), tmp_path / "out"), client=dask)
    split = result.record["split"]["stats"]
    assert split["malformedLines"] == 2
    assert all(n.startswith("Observation.ndjson at byte ") for n in split["malformedNamed"])
    assert result.record["counts"]["unknownPatients"] == 1
    assert result.record["counts"]["unknownPatientsNamed"] == ["Patient/nobody"]
    assert result.record["counts"]["unknownPatientResources"] == {"Observation": 1}
    assert result.record["counts"]["rows"] == len(PIDS)
    assert result.status == "complete"


def test_a_rerun_builds_only_the_missing_partition(dask: Any, tmp_path: Path) -> None:
    """After one partition's Parquet file is lost, the rerun rebuilds that one alone."""
    src = _write(tmp_path / "in")
    first = run_build(_config((src,), tmp_path / "out"), client=dask)
    total = first.record["partitions"]["total"]
    assert total > 1
    victim = sorted((tmp_path / "out" / "table").glob("part-*.parquet"))[0]
    victim.unlink()
    again = run_build(_config((src,), tmp_path / "out"), client=dask)
    assert again.record["partitions"] == {
        "total": total,
        "reused": total - 1,
        "built": 1,
        "missing": 0,
    }
    assert again.record["split"]["reused"] is True
    assert pq.read_table(tmp_path / "out" / "table").num_rows == len(PIDS)


def test_an_incremental_export_replaces_the_older_version(dask: Any, tmp_path: Path) -> None:
    """A later export's newer version of a resource (same id) wins; the row shows its value."""
    first = _write(tmp_path / "export" / "1")
    newer = tmp_path / "export" / "2"
    newer.mkdir(parents=True)
    (newer / "Observation.ndjson").write_text(
        _lines([obs("pt3-sbp", "8480-6", 128, "mm[Hg]", "2026-04-01T09:00:00Z", pid="pt3")])
    )
    result = run_build(_config((first, newer), tmp_path / "out"), client=dask)
    rows = {r["patient_id"]: r for r in pq.read_table(tmp_path / "out" / "table").to_pylist()}
    assert rows["pt3"]["sbp_mm_hg"] == 128
    assert rows["pt2"]["sbp_mm_hg"] == 150
    assert result.record["counts"]["duplicatesReplaced"] == 1


def test_a_lost_cluster_interrupts_and_the_rerun_finishes(
    dask: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task lost with its connection ends the run as 'interrupted' with what was done;
    the same command then builds only what is missing."""
    from distributed.comm.core import CommClosedError

    real = job.build_task

    def flaky(partition: int, *args: Any) -> dict[str, Any]:
        if partition == 0:
            raise CommClosedError("scheduler went away")
        return real(partition, *args)

    src = _write(tmp_path / "in")
    monkeypatch.setattr(job, "build_task", flaky)
    broken = run_build(_config((src,), tmp_path / "out"), client=dask)
    assert broken.status == "interrupted"
    assert "cluster lost: CommClosedError" in broken.record["errors"][0]
    assert broken.record["partitions"]["missing"] >= 1
    monkeypatch.setattr(job, "build_task", real)
    fixed = run_build(_config((src,), tmp_path / "out"), client=dask)
    assert fixed.status == "complete"
    # A partition still running when the run was declared interrupted may finish and be
    # written afterwards: the rerun reuses at least what the broken run saw done, and
    # rebuilds at most what it named missing (partition 0 among them).
    total, missing = broken.record["partitions"]["total"], broken.record["partitions"]["missing"]
    assert fixed.record["partitions"]["reused"] >= total - missing
    assert 1 <= fixed.record["partitions"]["built"] <= missing
    assert fixed.record["partitions"]["reused"] + fixed.record["partitions"]["built"] == total
    assert pq.read_table(tmp_path / "out" / "table").num_rows == len(PIDS)


def test_the_run_record_is_on_the_verified_audit_chain(dask: Any, tmp_path: Path) -> None:
    """The run (inputs, model shas, counts) is a population-run record; the chain verifies."""
    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    src = _write(tmp_path / "in")
    result = run_build(
        _config((src,), tmp_path / "out"),
        record=lambda body: audit.record_population_run(body).seq,
        client=dask,
    )
    (rec,) = audit.records(kind="population-run")
    assert rec.seq == result.audit_seq
    assert {m["id"] for m in rec.body["models"]} >= {"prevent", "pce"}
    assert all(len(m["sha256"]) == 64 for m in rec.body["models"])
    assert rec.body["counts"]["rows"] == len(PIDS)
    assert audit.verify().ok
    audit.close()


def test_the_run_record_exports_as_a_fhir_audit_event(dask: Any, tmp_path: Path) -> None:
    """The run's AuditEvent names its inputs, each model by Device and sha256, the table
    with its counts, and the outcome; every resource is valid FHIR R4."""
    from fhir.resources.R4B import get_fhir_model_class

    from cds_service.audit.fhir import export_resources

    audit = SqliteAuditLog(tmp_path / "audit.sqlite")
    src = _write(tmp_path / "in", extra_observations="{not json\n")
    run_build(
        _config((src,), tmp_path / "out"),
        record=lambda body: audit.record_population_run(body).seq,
        client=dask,
    )
    (rec,) = audit.records(kind="population-run")
    resources = list(export_resources([rec]))
    audit.close()
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    (event,) = [r for r in resources if r["resourceType"] == "AuditEvent"]
    devices = {r["id"]: r for r in resources if r["resourceType"] == "Device"}
    assert (event["type"]["code"], event["outcome"]) == ("110107", "0")
    entities = {e["name"]: e for e in event["entity"] if "name" in e}
    table = entities["population table (Parquet)"]
    details = {d["type"]: d["valueString"] for d in table["detail"]}
    assert details["rows"] == str(len(PIDS)) and details["malformedLines"] == "1"
    assert details["asOf"] == AS_OF.isoformat() and details["partitions.missing"] == "0"
    inputs = [e["what"]["display"] for e in event["entity"] if e.get("name") == "input NDJSON"]
    assert sorted(inputs) == sorted(str(p) for p in src.glob("*.ndjson"))
    for model in rec.body["models"]:
        entity = entities[f"model {model['id']} {model['version']}"]
        device_id = entity["what"]["reference"].removeprefix("Device/")
        assert entity["detail"] == [{"type": "sha256", "valueString": model["sha256"]}]
        assert model["sha256"] in str(devices[device_id]["identifier"])


def test_an_out_directory_of_another_date_is_refused(dask: Any, tmp_path: Path) -> None:
    """Mixing two as-of dates in one table would mislead: a new --out is asked for."""
    src = _write(tmp_path / "in")
    run_build(_config((src,), tmp_path / "out"), client=dask)
    later = BuildConfig(inputs=(src,), out=tmp_path / "out", as_of=date(2026, 7, 1), progress=False)
    with pytest.raises(job.PopulationInputError, match="as of 2026-06-01"):
        run_build(later, client=dask)


def test_an_input_edited_in_place_is_rebuilt(dask: Any, tmp_path: Path) -> None:
    """A value changed in an input file (same size) reaches the table on the rerun."""
    src = _write(tmp_path / "in")
    run_build(_config((src,), tmp_path / "out"), client=dask)
    path = src / "Observation.ndjson"
    text = path.read_text()
    value_at = text.index('"value": 150', text.index('"pt3-sbp"'))
    path.write_text(text[:value_at] + '"value": 128' + text[value_at + len('"value": 150') :])
    assert path.stat().st_size == len(text.encode())
    again = run_build(_config((src,), tmp_path / "out"), client=dask)
    rows = {r["patient_id"]: r for r in pq.read_table(tmp_path / "out" / "table").to_pylist()}
    assert rows["pt3"]["sbp_mm_hg"] == 128
    assert again.record["partitions"]["built"] == 1
