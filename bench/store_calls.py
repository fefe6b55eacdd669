"""What safe retries cost per store call on PostgreSQL: each call of the JWT replay cache
and of the twin store is an explicit transaction (BEGIN ... COMMIT), so a connection the
server closed before COMMIT can be retried without doubling a write. Printed beside the
same statements sent bare in autocommit (the pre-retry way), measured in one run, on a
schema of its own (dropped afterwards).

Then the calling thread's CPU per call (``time.thread_time``) of the three writes every
hook call makes (twin save of a new version, audit append, replay-cache check) on
SQLite and on PostgreSQL: what the client spends beside the server's commit, which on a
loaded machine the wall-clock median hides. To compare two trees, run this file with
the other tree first on ``PYTHONPATH``.

    python bench/store_calls.py [--calls 2000]

Needs PostgreSQL on 127.0.0.1:5432 (TWIN_CDS_TEST_PG_URL to change it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from cds_service.audit.sql import SqlAuditLog
from cds_service.http.auth import PostgresReplayCache, ReplayCache
from twin_engine import build_twin_from_fhir
from twin_engine.store import PostgresTwinStore, SqlTwinStore
from twin_engine.twin import Twin

BASE = os.environ.get("TWIN_CDS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _per_call_us(calls: int, run: Callable[[int], object]) -> float:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        run(i)
        samples.append(time.perf_counter() - started)
    return 1e6 * statistics.median(samples)


def _cpu_us(calls: int, run: Callable[[int], object]) -> float:
    """The calling thread's CPU per call (median), in microseconds."""
    samples = []
    for i in range(calls):
        started = time.thread_time()
        run(i)
        samples.append(time.thread_time() - started)
    return 1e6 * statistics.median(samples)


def _hook_writes_cpu(
    calls: int, twin: Twin, twins_url: str, audit_url: str, replay: PostgresReplayCache
) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.audit.conftest import entry

    twins = SqlTwinStore(twins_url)
    audit = SqlAuditLog(audit_url)
    now = time.time()
    try:
        return {
            "twin save": _cpu_us(calls, lambda i: twins.save(twin, key=f"c-{i}")),
            "audit append": _cpu_us(calls, lambda i: audit.record(entry(i))),
            "replay check": _cpu_us(calls, lambda i: replay.first_use("iss", f"c-{i}", now + 60)),
        }
    finally:
        twins.close()
        audit.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    schema = f"bench_store_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = f"{BASE}?options=-csearch_path%3D{schema}"
    try:
        cache = PostgresReplayCache(url)
        bare = psycopg.connect(url, autocommit=True)
        now = time.time()

        def ours(i: int) -> object:
            return cache.first_use("iss", f"a-{i}", now + 60)

        def plain(i: int) -> object:
            bare.execute("DELETE FROM twin_cds_used_jti WHERE expires_at < %s", (now - 300,))
            return bare.execute(
                "INSERT INTO twin_cds_used_jti VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                ("iss", f"b-{i}", now + 60),
            ).rowcount

        replay_ours, replay_bare = _per_call_us(calls, ours), _per_call_us(calls, plain)
        twins = PostgresTwinStore(url)
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient", "id": "p", "gender": "male"}}],
        }
        twin = build_twin_from_fhir(bundle, patient_id="p")
        save_us = _per_call_us(calls // 4, lambda i: twins.save(twin, key=f"k-{i}"))
        cpu = {"postgresql": _hook_writes_cpu(calls // 4, twin, url, url, cache)}
        with tempfile.TemporaryDirectory() as tmp:
            local = ReplayCache(Path(tmp) / "replay.db")
            twins_db, audit_db = Path(tmp) / "twins.db", Path(tmp) / "audit.db"
            cpu["sqlite"] = _hook_writes_cpu(
                calls // 4, twin, f"sqlite:///{twins_db}", f"sqlite:///{audit_db}", local
            )
            local.close()
        cache.close()
        twins.close()
        bare.close()
    finally:
        with psycopg.connect(BASE, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    print(f"replay cache first_use, in a retryable transaction: {replay_ours:8.1f} us (median)")
    print(f"the same two statements, bare autocommit:           {replay_bare:8.1f} us")
    print(f"ratio ours / bare:                                  {replay_ours / replay_bare:8.2f}")
    print(f"twin store save of a new version (lock, read, insert): {save_us:8.1f} us")
    for backend, figures in cpu.items():
        row = ", ".join(f"{name} {us:.0f} us" for name, us in figures.items())
        print(f"client CPU per call (median), {backend}: {row}")


if __name__ == "__main__":
    main()
