"""Audit trail throughput: appends per second, verify and export rates, per store.

For SQLite (WAL, synchronous=FULL) and, when 127.0.0.1:5432 answers, PostgreSQL: one
writer appending realistic hook records (a signed checkpoint every 100), then 4 worker
processes x 2 threads appending at once (one chain), then `verify` over the whole
chain (hashes, links, signatures, index columns) and the FHIR NDJSON export. The
baseline is a bare INSERT of the same body into a table without a chain, in the same
store and run, so the ratio is the chain's own cost. Writes bench/results/audit.json.

    python bench/audit_append.py [--records 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cds_service.audit.fhir import export_resources, to_ndjson  # noqa: E402
from cds_service.audit.log import (  # noqa: E402
    canonical_json,
    generate_demo_signing_key,
    load_signer,
)
from tests.audit.conftest import entry  # noqa: E402
from tests.audit.stores import StoreSpec, pg_available, pg_schema, pg_url  # noqa: E402

RESULTS = REPO / "bench" / "results" / "audit.json"
WORKERS = 4
THREADS = 2


def _bare_inserts(spec: StoreSpec, n: int) -> float:
    """Appends/s of the same body into a plain table (no chain, no lock, no index)."""
    body = canonical_json(entry(1).to_json()).decode()
    started = time.perf_counter()
    if spec.kind == "sqlite":
        assert spec.sqlite_path is not None
        db = sqlite3.connect(spec.sqlite_path.with_name("bare.sqlite"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE bare (id INTEGER PRIMARY KEY, body TEXT)")
        started = time.perf_counter()
        for _ in range(n):
            db.execute("INSERT INTO bare (body) VALUES (?)", (body,))
        db.close()
    else:
        import psycopg

        assert spec.pg_url is not None
        with psycopg.connect(spec.pg_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bare (id BIGSERIAL PRIMARY KEY, body TEXT)")
            started = time.perf_counter()
            for _ in range(n):
                conn.execute("INSERT INTO bare (body) VALUES (%s)", (body,))
    return n / (time.perf_counter() - started)


def _concurrent(spec: StoreSpec, per_thread: int, key: Path) -> float:
    target = str(spec.sqlite_path) if spec.kind == "sqlite" else str(spec.pg_url)
    procs = []
    for i in range(WORKERS):
        proc = subprocess.Popen(  # noqa: S603 - our interpreter and our own module
            [
                sys.executable,
                "-m",
                "tests.audit.writer",
                spec.kind,
                target,
                str(per_thread),
                str(THREADS),
                f"bench{i}",
                str(key),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        procs.append(proc)
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    for proc in procs:
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    return WORKERS * THREADS * per_thread / (time.perf_counter() - started)


def run(spec: StoreSpec, n: int, key: Path) -> dict[str, Any]:
    log = spec.open(signer=load_signer(key), checkpoint_every=100)
    entries = [entry(i, patient=f"p{i % 50}") for i in range(n)]
    started = time.perf_counter()
    for e in entries:
        log.record(e)
    single = n / (time.perf_counter() - started)
    concurrent = _concurrent(spec, n // (WORKERS * THREADS), key)
    started = time.perf_counter()
    report = log.verify()
    verify_s = time.perf_counter() - started
    assert report.ok, report.first_bad
    started = time.perf_counter()
    exported = sum(len(line) for line in to_ndjson(export_resources(log.records())))
    export_s = time.perf_counter() - started
    bare = _bare_inserts(spec, n)
    spec.close_all()
    return {
        "store": spec.kind,
        "appends_per_s_single": round(single),
        "bare_inserts_per_s": round(bare),
        "chain_cost_ratio": round(bare / single, 2),
        "appends_per_s_4x2_concurrent": round(concurrent),
        "chain_records": report.last_seq,
        "checkpoints": report.checkpoints,
        "verify_records_per_s": round(report.last_seq / verify_s),
        "export_records_per_s": round(len(log.records()) / export_s) if export_s else None,
        "export_bytes": exported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        key = generate_demo_signing_key(Path(tmp) / "keys")
        rows.append(
            run(StoreSpec("sqlite", sqlite_path=Path(tmp) / "audit.sqlite"), args.records, key)
        )
        if pg_available():
            with pg_schema() as schema:
                rows.append(run(StoreSpec("postgres", pg_url=pg_url(schema)), args.records, key))
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": platform.platform(), "records": args.records, "rows": rows}, indent=2
        )
    )


if __name__ == "__main__":
    main()
