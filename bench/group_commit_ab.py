"""A/B of the audit trail's group commit on the cold regime of ``bench/load.py``.

Our service alone (no peer), memo off, ``--distinct`` never-seen patients each sent once
at ``--concurrency``; every round starts a fresh service on a fresh data directory with
TWIN_CDS_AUDIT_GROUP_COMMIT off or on, alternating (off, on, off, on, ...), so both arms
see the same machine load over time. Prints each round and the medians, and the ratio
on/off of throughput, p50 and p99.

``--client`` as in load.py: wrk (default when installed) sends each patient once and
leaves the cores to the service; httpx is a Python client in this process, which on a
2-core machine competes with the service for CPU.

    python bench/group_commit_ab.py [--rounds 3] [--distinct 600] [--concurrency 32]
                                    [--client wrk|httpx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import OUR_PATH, distinct_bodies, free_port, our_server, run_distinct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per arm")
    parser.add_argument("--distinct", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--time-cap", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx"
    )
    args = parser.parse_args()
    warm = distinct_bodies(16, seed=args.seed + 1000)
    # As load.py: spares beyond the count for wrk's requests in flight at the end.
    cold = distinct_bodies(args.distinct + args.concurrency, seed=args.seed + 2000)
    rows: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="twin-cds-gc-ab-") as tmp_name:
        tmp = Path(tmp_name)
        for i in range(args.rounds):
            for arm in ("off", "on"):
                env = {
                    "TWIN_CDS_PARSE_MEMO": "false",
                    "TWIN_CDS_AUDIT_GROUP_COMMIT": "true" if arm == "on" else "false",
                }
                port = free_port()
                data = tmp / f"data-{i}-{arm}"
                with our_server(port, args.workers, data, "http://127.0.0.1:9", tmp, env) as srv:
                    r = run_distinct(f"twin-cds {arm}", srv.base_url + OUR_PATH, warm, cold, args)
                print(
                    f"round {i + 1} {arm:>3}: {r.completed - r.errors} ok {r.errors} err "
                    f"{r.throughput_rps:7.1f} req/s p50 {r.p50_ms:6.1f} ms p99 {r.p99_ms:6.1f} ms"
                    + ("  (time cap hit)" if r.capped else ""),
                    flush=True,
                )
                rows[arm].append((r.throughput_rps, r.p50_ms, r.p99_ms))
    med = {arm: [statistics.median(col) for col in zip(*v, strict=True)] for arm, v in rows.items()}
    for arm, (rps, p50, p99) in med.items():
        print(f"median {arm:>3}: {rps:7.1f} req/s p50 {p50:6.1f} ms p99 {p99:6.1f} ms")
    on, off = med["on"], med["off"]
    print(
        f"on/off: throughput x{on[0] / off[0]:.2f}, p50 x{on[1] / off[1]:.2f}, "
        f"p99 x{on[2] / off[2]:.2f}"
    )


if __name__ == "__main__":
    main()
