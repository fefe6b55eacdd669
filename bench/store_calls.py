"""What safe retries cost per store call on PostgreSQL: each call of the JWT replay cache
and of the twin store is an explicit transaction (BEGIN ... COMMIT), so a connection the
server closed before COMMIT can be retried without doubling a write. Printed beside the
same statements sent bare in autocommit (the pre-retry way), measured in one run, on a
schema of its own (dropped afterwards).

    python bench/store_calls.py [--calls 2000]

Needs PostgreSQL on 127.0.0.1:5432 (TWIN_CDS_TEST_PG_URL to change it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql

from cds_service.http.auth import PostgresReplayCache
from twin_engine import build_twin_from_fhir
from twin_engine.store import PostgresTwinStore

BASE = os.environ.get("TWIN_CDS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _per_call_us(calls: int, run: Callable[[int], object]) -> float:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        run(i)
        samples.append(time.perf_counter() - started)
    return 1e6 * statistics.median(samples)


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


if __name__ == "__main__":
    main()
