"""A real cluster that disappears mid-run: ``dask scheduler`` and ``dask worker`` processes
on 127.0.0.1, ``twin-cds population build --scheduler``, the scheduler killed while the
build runs. The run ends ``interrupted`` with the loss named and the missing partitions
counted, in run.json and on the audit trail; a rerun against a fresh scheduler builds
only the partitions that are missing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cds_service.audit.sql import SqliteAuditLog
from tests.support.fhir import obs, patient

pytestmark = pytest.mark.integration

PATIENTS = 400
WHEN = "2026-03-01T09:00:00Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and the dask CLI
        [sys.executable, "-m", "dask", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@contextmanager
def _cluster() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A scheduler and one single-threaded worker process; (address, scheduler process)."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _dask("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    worker = _dask(
        "worker",
        address,
        "--nthreads",
        "1",
        "--nworkers",
        "1",
        "--no-dashboard",
        "--host",
        "127.0.0.1",
        "--death-timeout",
        "15",
    )
    try:
        with Client(address, timeout="60s") as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(1, timeout=120)
        yield address, scheduler
    finally:
        for proc in (worker, scheduler):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _population(directory: Path) -> Path:
    directory.mkdir(parents=True)
    pids = [f"k{i:04d}" for i in range(PATIENTS)]
    people = [patient(p, gender="male", birth="1966-01-01", race=["2106-3"]) for p in pids]
    labs = [
        o
        for i, p in enumerate(pids)
        for o in (
            obs(f"{p}-tc", "2093-3", 180 + i % 60, "mg/dL", WHEN, pid=p),
            obs(f"{p}-hdl", "2085-9", 45, "mg/dL", WHEN, pid=p),
            obs(f"{p}-sbp", "8480-6", 120 + i % 40, "mm[Hg]", WHEN, pid=p),
            obs(f"{p}-egfr", "98979-8", 80, "mL/min/{1.73_m2}", WHEN, pid=p),
        )
    ]
    (directory / "Patient.ndjson").write_text("".join(json.dumps(r) + "\n" for r in people))
    (directory / "Observation.ndjson").write_text("".join(json.dumps(r) + "\n" for r in labs))
    return directory


def _build(src: Path, out: Path, address: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "twin_cds.cli",
            "population",
            "build",
            "--ndjson",
            str(src),
            "--out",
            str(out),
            "--scheduler",
            address,
            "--as-of",
            "2026-06-01",
            "--quiet",
            # ~10 patients a partition: the scheduler dies with most of them still to do.
            "--partition-mb",
            "0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_killed_scheduler_is_named_counted_and_the_rerun_finishes(tmp_path: Path) -> None:
    env = {**os.environ, "TWIN_CDS_DATA_DIR": str(tmp_path / "data")}
    src, out = _population(tmp_path / "in"), tmp_path / "out"
    done = out / "work" / "done"
    with _cluster() as (address, scheduler):
        build = _build(src, out, address, env)
        deadline = time.monotonic() + 240
        while not (done.is_dir() and any(done.glob("*.json"))):
            assert build.poll() is None, build.communicate()
            assert time.monotonic() < deadline, "no partition finished"
            time.sleep(0.05)
        os.killpg(scheduler.pid, signal.SIGKILL)
        stdout, stderr = build.communicate(timeout=240)
    assert build.returncode != 0, stdout
    assert "run interrupted" in stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted"
    (error,) = run["errors"]
    assert error.startswith("cluster lost: ") and "rerun the same command" in error
    partitions = run["partitions"]
    assert partitions["missing"] > 0
    assert partitions["built"] + partitions["missing"] == partitions["total"]
    # The run counts what was on disk when it ended. A worker of the killed cluster can
    # still finish the partition it was running before the cluster is torn down (it
    # outlives its scheduler for a moment): that one is on disk, not in the count, and
    # the rerun reuses it rather than building it again.
    built_first = {p.name for p in done.glob("*.json")}
    assert 1 <= partitions["built"] <= len(built_first)

    with _cluster() as (address, _):
        again = _build(src, out, address, env)
        stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    rerun = json.loads(stdout)
    assert rerun["status"] == "complete"
    assert rerun["partitions"]["reused"] == len(built_first)
    assert rerun["partitions"]["built"] == partitions["total"] - len(built_first)
    assert pq.read_table(out / "table").num_rows == PATIENTS

    audit = SqliteAuditLog(tmp_path / "data" / "audit.sqlite")
    try:
        records = audit.records(kind="population-run")
        assert [r.body["status"] for r in records] == ["interrupted", "complete"]
        assert records[0].body["errors"] == run["errors"]
        assert records[0].body["partitions"]["missing"] == partitions["missing"]
        assert audit.verify().ok
    finally:
        audit.close()
