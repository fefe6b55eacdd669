"""Storage faults against the real service under uvicorn: PostgreSQL refusing connections
and terminating the service's backends, a full disk under SQLite, a read-only data
directory. Calls are signed (authentication on), so the JWT replay cache is in the path
beside the twin store and the audit trail. Every answer is read (status and body), and
the body's word is checked against the audit trail: each 200 has its audit record; each
503 that says "not recorded" has none, and one that says "recorded as failed" has
exactly that record.

Only what the test made is touched: its own PostgreSQL database (terminating only that
database's backends, refusing connections only to it), its own tmpfs, its own files.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.audit.log import ChainedAuditLog
from cds_service.audit.sql import SqliteAuditLog
from ehr_sim.servers import RunningServer, free_port, wait_until_up
from tests.audit.stores import PG_BASE_URL, pg_available
from tests.conftest import hook_request, prefetch_from_bundle
from tests.support.keys import es384, hook_claims

pytestmark = pytest.mark.integration

ISS = "https://ehr.faults.test"
KEY = es384("k1")
NOT_RECORDED = "this call was not answered and it was not recorded"
RECORDED_AS_FAILED = "this call was not answered and it was recorded as failed"


@dataclass(frozen=True)
class Answer:
    hook_instance: str
    status: int
    body: dict[str, Any] | None
    retry_after: str | None

    def diagnostics(self) -> str:
        assert self.body is not None
        return str(self.body["issue"][0]["diagnostics"])


def _start_service(work: Path, env: dict[str, str], *, user: int | None = None) -> RunningServer:
    port = free_port()
    log_path = work / f"service-{port}.log"
    command = [sys.executable, "-m", "twin_cds.cli", "serve", "--port", str(port)]
    if user is not None:
        # Unprivileged, so file permissions apply to the service (root ignores them).
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    client = {"iss": ISS, "jwks": KEY.jwks()}
    full_env = {
        **os.environ,
        "TWIN_CDS_CLIENTS": json.dumps([client]),
        "TWIN_CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", process, log_path)
    return RunningServer(url, process, log_path)


@contextlib.contextmanager
def _service(work: Path, env: dict[str, str], *, user: int | None = None) -> Iterator[str]:
    server = _start_service(work, env, user=user)
    try:
        yield server.base_url
    finally:
        server.stop()


class Caller:
    """Hook calls for ever new patients (each call saves a new twin and a new record)."""

    def __init__(self, base_url: str, bundles: list[dict[str, Any]]) -> None:
        self._url = base_url
        self._bundles = bundles
        self.answers: list[Answer] = []

    def call(self) -> Answer:
        n = len(self.answers)
        prefetch = copy.deepcopy(prefetch_from_bundle(self._bundles[n % len(self._bundles)]))
        patient = f"fault-{uuid.uuid4().hex[:12]}"
        prefetch["patient"]["id"] = patient
        body = hook_request(patient, prefetch, hookInstance=str(uuid.uuid4()))
        url = f"{self._url}/cds-services/ascvd-risk"
        token = KEY.sign(hook_claims(ISS, url))
        # A connection reset or a closed connection without an answer fails the test here.
        response = httpx.post(
            url, json=body, timeout=60, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        answer = Answer(
            body["hookInstance"], response.status_code, parsed, response.headers.get("retry-after")
        )
        self.answers.append(answer)
        return answer

    def calls(self, n: int) -> list[Answer]:
        return [self.call() for _ in range(n)]


def _check_against_the_trail(answers: list[Answer], audit: ChainedAuditLog) -> None:
    """Each answer is one the trail agrees with, and the chain is intact."""
    hook_records: dict[str, list[Any]] = {}
    for rec in audit.records():
        hook_records.setdefault(rec.body["hookInstance"], []).append(rec)
    for a in answers:
        found = hook_records.get(a.hook_instance, [])
        if a.status == 200:
            assert a.body is not None and a.body["cards"], a
            assert [r.body["status"] for r in found] == ["ok"], a
        else:
            assert a.status == 503, a
            assert a.retry_after is not None and int(a.retry_after) > 0, a
            assert a.body is not None and a.body["resourceType"] == "OperationOutcome", a
            if NOT_RECORDED in a.diagnostics():
                assert found == [], a
            else:
                assert RECORDED_AS_FAILED in a.diagnostics(), a
                assert [r.body["status"] for r in found] == ["error"], a
    report = audit.verify()
    assert report.first_bad is None, report


# --- PostgreSQL ---------------------------------------------------------------------


@contextlib.contextmanager
def _own_database() -> Iterator[tuple[str, str]]:
    """A database of this test's own (dropped afterwards); its URL and name."""
    import psycopg
    from psycopg import sql

    name = f"twin_cds_fault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_BASE_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}", name
    finally:
        with psycopg.connect(PG_BASE_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _terminate_backends_of(database: str) -> int:
    """Terminate the connections to this test's own database only (never the server's,
    never another database's); how many were terminated."""
    import psycopg

    with psycopg.connect(PG_BASE_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def _allow_connections(database: str, allowed: bool) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_BASE_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allowed)
            )
        )


@pytest.fixture(scope="module")
def pg_database() -> Iterator[tuple[str, str]]:
    if not pg_available():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with _own_database() as db:
        yield db


def test_postgresql_terminated_backends_and_refused_connections_are_answered_honestly(
    pg_database: tuple[str, str], tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """Terminated backends cost no call (reconnect and retry); refused connections are
    503 with Retry-After and no record; afterwards calls are answered and recorded again."""
    from cds_service.audit.sql import PostgresAuditLog

    url, database = pg_database
    with _service(
        tmp_path, {"TWIN_CDS_DATABASE_URL": url, "TWIN_CDS_DATA_DIR": str(tmp_path)}
    ) as base:
        caller = Caller(base, demo_bundles)
        before = caller.calls(3)
        assert _terminate_backends_of(database) > 0
        after_terminate = caller.calls(3)
        _allow_connections(database, False)
        _terminate_backends_of(database)
        try:
            refused = caller.calls(3)
        finally:
            _allow_connections(database, True)
        recovered = caller.calls(3)
    assert [a.status for a in before + after_terminate] == [200] * 6
    assert [a.status for a in refused] == [503] * 3
    assert all(NOT_RECORDED in a.diagnostics() for a in refused)
    assert [a.status for a in recovered] == [200] * 3
    audit = PostgresAuditLog(url)
    try:
        _check_against_the_trail(caller.answers, audit)
    finally:
        audit.close()


# --- a full disk (SQLite) -------------------------------------------------------------


@contextlib.contextmanager
def _small_filesystem(size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` of this test's own, unmounted afterwards."""
    point = Path(tempfile.mkdtemp(prefix="twin-cds-full-"))
    mounted = subprocess.run(  # noqa: S603
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(point)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        point.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)  # noqa: S603, S607
        point.rmdir()


def _fill(directory: Path) -> Path:
    """Take every free byte of the file system ``directory`` is on."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
                f.flush()
    with contextlib.suppress(OSError), filler.open("ab") as f:
        while True:  # the last few bytes
            f.write(b"\0")
            f.flush()
    return filler


def test_a_full_disk_is_503_without_a_record_and_every_call_is_answered(
    tmp_path: Path, demo_bundles: list[dict[str, Any]]
) -> None:
    """SQLite on a full file system: no call goes unanswered, 503s are unrecorded, 200s
    recorded; once space is free again calls succeed and the chain verifies."""
    with _small_filesystem(24) as disk:
        data = disk / "data"
        with _service(tmp_path, {"TWIN_CDS_DATA_DIR": str(data)}) as base:
            caller = Caller(base, demo_bundles)
            before = caller.calls(3)
            filler = _fill(disk)
            during = caller.calls(40)
            filler.unlink()
            after = caller.calls(3)
        audit = SqliteAuditLog(data / "audit.sqlite")
        try:
            _check_against_the_trail(caller.answers, audit)
        finally:
            audit.close()
    assert [a.status for a in before + after] == [200] * 6
    assert {a.status for a in during} <= {200, 503}
    assert sum(a.status == 503 for a in during) >= 5, [a.status for a in during]
    log = next(tmp_path.glob("service-*.log")).read_text()
    # One line per failure, no traceback and no "Exception in ASGI application" for an
    # outage: it is not a bug of ours.
    assert "Exception in ASGI application" not in log
    assert "Traceback" not in log
    # The real error is reported, not ROLLBACK's "no transaction is active" after a
    # COMMIT that SQLite had already rolled back.
    assert "database or disk is full" in log
    assert "cannot rollback" not in log
    assert log.count("503 on POST /cds-services/ascvd-risk") == sum(
        a.status == 503 for a in caller.answers
    )


# --- a read-only data directory ---------------------------------------------------------


NOBODY = 65534


def test_a_read_only_data_directory_is_503_and_the_body_says_whether_it_was_recorded(
    demo_bundles: list[dict[str, Any]],
) -> None:
    """The data directory turns read-only under a running (unprivileged) service: the
    twin store cannot be opened for writing, calls are 503 saying whether they were
    recorded (the audit log's open file still writes), and the trail agrees."""
    work = Path(tempfile.mkdtemp(prefix="twin-cds-ro-"))
    try:
        work.chmod(0o755)
        data = work / "data"
        data.mkdir()
        os.chown(data, NOBODY, NOBODY)
        with _service(work, {"TWIN_CDS_DATA_DIR": str(data)}, user=NOBODY) as base:
            caller = Caller(base, demo_bundles)
            before = caller.calls(3)
            for path in data.iterdir():
                path.chmod(0o444)
            data.chmod(0o555)
            try:
                during = caller.calls(5)
            finally:
                data.chmod(0o755)
                for path in data.iterdir():
                    path.chmod(0o644)
            after = caller.calls(3)
        audit = SqliteAuditLog(data / "audit.sqlite")
        try:
            _check_against_the_trail(caller.answers, audit)
        finally:
            audit.close()
        assert [a.status for a in before + after] == [200] * 6
        assert [a.status for a in during] == [503] * 5
    finally:
        shutil.rmtree(work, ignore_errors=True)
