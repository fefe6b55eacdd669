"""What a new patient's hook call pays for its two commits on the embedded SQLite
default: the twin version (twin store) and the audit record (audit trail).

Both layouts in one run, interleaved round by round (the machine is shared):
  full+full    the twin store at synchronous=FULL, as before this change
  normal+full  the twin store at synchronous=NORMAL (a twin is rebuilt from FHIR at the
               next call), the audit trail at FULL (a recorded call survives a crash)

Each call saves a distinct patient's twin (a new version) and appends one hook record
with one card, from ``--threads`` threads as the service's thread pool would. Prints
calls/s and the median per call of each layout, and the ratio.

    python bench/commit_cost.py [--calls 400] [--rounds 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cds_service.audit.log import AuditEntry, ModelUse
from cds_service.audit.sql import SqliteAuditLog
from tests.support.fhir import bundle, patient
from twin_engine import build_twin_from_fhir
from twin_engine.store import SqlTwinStore
from twin_engine.store.db import Synchronous, sqlite_url


def _entry(i: int) -> AuditEntry:
    return AuditEntry(
        hook_instance=f"h-{i}",
        hook="patient-view",
        service_id="ascvd-risk",
        patient_id=f"p-{i}",
        status="ok",
        duration_ms=10.0,
        twin_version=1,
        twin_hash="ab" * 32,
        model=ModelUse("pce", "1.0.0", "cd" * 32),
        outputs={"risk_10y_ascvd": 0.1},
        cards=({"uuid": f"card-{i}", "summary": "10-year ASCVD risk 10.0%"},),
    )


def run(layout: Synchronous, calls: int, threads: int, twins_in: list[object]) -> list[float]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        twins = SqlTwinStore(sqlite_url(Path(tmp) / "twins.sqlite"), synchronous=layout)
        audit = SqliteAuditLog(Path(tmp) / "audit.sqlite")
        durations: list[float] = []

        def call(i: int) -> None:
            started = time.perf_counter()
            twins.save(twins_in[i])  # type: ignore[arg-type]
            audit.record(_entry(i))
            durations.append(time.perf_counter() - started)

        with ThreadPoolExecutor(threads) as pool:
            wall = time.perf_counter()
            list(pool.map(call, range(calls)))
            wall = time.perf_counter() - wall
        twins.close()
        audit.close()
    return [calls / wall, statistics.median(durations) * 1000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    twins = [
        build_twin_from_fhir(bundle(patient(f"p-{i}")), patient_id=f"p-{i}")
        for i in range(args.calls)
    ]
    results: dict[str, list[list[float]]] = {"FULL": [], "NORMAL": []}
    for _ in range(args.rounds):
        for layout in ("FULL", "NORMAL"):
            results[layout].append(run(layout, args.calls, args.threads, twins))  # type: ignore[arg-type]
    rate = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    p50 = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    for k, name in (("FULL", "twins FULL + audit FULL  "), ("NORMAL", "twins NORMAL + audit FULL")):
        print(f"{name}: {rate[k]:7.1f} calls/s, median {p50[k]:6.2f} ms per call")
    print(
        f"ratio NORMAL/FULL: throughput {rate['NORMAL'] / rate['FULL']:.2f}x, "
        f"median per call {p50['NORMAL'] / p50['FULL']:.2f}x "
        f"({args.calls} calls x {args.rounds} rounds, {args.threads} threads)"
    )


if __name__ == "__main__":
    main()
