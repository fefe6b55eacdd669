"""Several worker processes, each with several threads, write one valid chain; a killed
writer leaves no half-written record."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from cds_service.audit.log import AuditSigner, ChainReport, generate_demo_signing_key, load_signer
from tests.audit.stores import StoreSpec

PROCESSES = 4
THREADS = 3
RECORDS = 40


def _target(store: StoreSpec) -> str:
    return str(store.sqlite_path) if store.kind == "sqlite" else str(store.pg_url)


def _start(store: StoreSpec, args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(  # noqa: S603 - our interpreter and our own test module
        [sys.executable, "-m", "tests.audit.writer", store.kind, _target(store), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _finish(proc: subprocess.Popen[str], timeout: float) -> int:
    code = proc.wait(timeout=timeout)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    return code


def test_concurrent_workers_write_one_valid_chain(store: StoreSpec, tmp_path: Path) -> None:
    """4 processes x 3 threads append at once; the chain verifies and holds every record."""
    key = generate_demo_signing_key(tmp_path / "keys")
    log = store.open(signer=load_signer(key), checkpoint_every=50)  # creates the schema first
    procs = [
        _start(store, [str(RECORDS), str(THREADS), f"w{i}", str(key)]) for i in range(PROCESSES)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    codes = [_finish(proc, timeout=120) for proc in procs]
    assert codes == [0] * PROCESSES
    report = log.verify()
    assert report.ok, report.first_bad
    hooks = log.records()
    assert len(hooks) == PROCESSES * THREADS * RECORDS
    assert len({r.body["hookInstance"] for r in hooks}) == len(hooks)
    # A checkpoint every 50 records, whoever wrote them.
    assert report.checkpoints == report.last_seq // 51
    assert report.signatures_checked == report.checkpoints
    log.close()


def test_a_killed_writer_leaves_a_valid_chain(store: StoreSpec, signer: AuditSigner) -> None:
    """SIGKILL in the middle of appends: every committed record verifies, none is partial."""
    log = store.open()
    proc = _start(store, ["0", "2", "victim"])
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while len(log.records()) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert _finish(proc, timeout=30) == -signal.SIGKILL
    written = len(log.records())
    assert written >= 100
    report = log.verify()
    assert report.ok, report.first_bad
    # The chain goes on after the crash.
    from tests.audit.conftest import entry

    log.record(entry(1, patient="after-crash"))
    assert log.verify().ok
    assert len(log.records()) == written + 1
    log.close()


def test_verify_while_workers_append_reports_no_false_tampering(store: StoreSpec) -> None:
    """Records committed while verify walks the chain are not mistaken for tampering."""
    log = store.open()
    procs = [_start(store, ["0", "2", f"live{i}"]) for i in range(2)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    reports: list[ChainReport] = []
    try:
        deadline = time.monotonic() + 60
        while len(log.records()) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        while len(reports) < 20 and time.monotonic() < deadline:
            reports.append(log.verify())
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            _finish(proc, timeout=30)
    assert [r.first_bad for r in reports] == [None] * len(reports)
    assert reports[-1].last_seq > reports[0].last_seq, "the workers were appending meanwhile"
