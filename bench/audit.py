"""Auditor follow-through costs: replay per record, and statistics over 100k records.

Replay: the real service (in-process) answers risk calls (ascvd-risk, cardio-renal-risk)
and vancomycin dosing calls; each record is then replayed (twin version reloaded, model
files loaded from the archive by sha256, models rerun, cards rebuilt and compared). The
ratio is replay time over the call's own recorded duration, per kind. Every replay is
measured cold (a fresh archive: model sessions built from the files, what an auditor's
single replay costs) and warm (the same archive again: files still read and hashed).

Statistics: a SQLite audit chain of N hook records (one card each) and feedback on half
of the cards, then ``follow_through`` (query + tally by service, model version, card
kind, tenant and month). The baseline is reading the same records without tallying, in
the same run, so the ratio is the statistics' own cost. The chain is written 1,000
records a transaction to build it quickly; reads do not depend on it.

    python bench/audit.py [--calls 12] [--records 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from cds_service.audit.records import AuditQuery  # noqa: E402
from cds_service.audit.replay import ModelArchive, installed_shas, replay_record  # noqa: E402
from cds_service.audit.sql import SqliteAuditLog  # noqa: E402
from cds_service.audit.stats import follow_through  # noqa: E402
from cds_service.settings import Settings  # noqa: E402
from cds_service.stores import open_twin_store  # noqa: E402
from ehr_sim.patients import generate_patients  # noqa: E402
from onnx_models.registry import ModelRegistry  # noqa: E402
from tests.audit.conftest import entry  # noqa: E402
from tests.conftest import hook_request, prefetch_from_bundle  # noqa: E402
from tests.support.vancomycin import draft_order, order_sign_call  # noqa: E402
from twin_cds.app import create_app  # noqa: E402

RESULTS = REPO / "bench" / "results" / "audit_follow_through.json"


def bench_replay(data: Path, calls: int) -> dict[str, Any]:
    settings = Settings(data_dir=data, auth_required=False)
    with TestClient(create_app(settings)) as c:
        c.app.state.runtime = dataclasses.replace(  # type: ignore[attr-defined]
            c.app.state.runtime,  # type: ignore[attr-defined]
            today=lambda: date(2026, 6, 1),
        )
        for n, bundle in enumerate(generate_patients(calls, seed=7)):
            pf = prefetch_from_bundle(bundle)
            for service in ("ascvd-risk", "cardio-renal-risk"):
                body = hook_request(pf["patient"]["id"], pf, hookInstance=f"{service}-{n}")
                c.post(f"/cds-services/{service}", json=body)
            dose = order_sign_call(n, draft_order(500 + 250 * (n % 4), 12), dialysis=False)
            c.post("/cds-services/vancomycin-dosing-sign", json=dose)
    log = SqliteAuditLog(settings.audit_db, checkpoint_every=0)
    records = log.records()
    log.close()
    twins = open_twin_store(settings)
    installed = installed_shas(ModelRegistry.load())
    by_kind: dict[str, list[tuple[float, float, float]]] = {}
    outcomes: dict[str, int] = {}
    for rec in records:
        timings = []
        # Cold: a fresh archive (model sessions built from the files); warm: the same
        # archive again (files still read and hashed, sessions reused).
        archive = ModelArchive(settings.model_archive_dir)
        for _ in range(2):
            started = time.perf_counter()
            report = replay_record(rec, twins=twins, archive=archive, installed=installed)
            timings.append(1000 * (time.perf_counter() - started))
            outcomes[report.outcome] = outcomes.get(report.outcome, 0) + 1
        by_kind.setdefault(str(rec.body["service"]), []).append(
            (timings[0], timings[1], float(rec.body["durationMs"]))
        )
    twins.close()
    out: dict[str, Any] = {"outcomes (each record twice)": outcomes}
    for service, rows in sorted(by_kind.items()):
        cold = statistics.median(r[0] for r in rows)
        warm = statistics.median(r[1] for r in rows)
        call = statistics.median(r[2] for r in rows)
        out[service] = {
            "records": len(rows),
            "replay_cold_ms_median": round(cold, 2),
            "replay_warm_ms_median": round(warm, 2),
            "call_ms_median": round(call, 2),
            "cold_over_call": round(cold / call, 2),
            "warm_over_call": round(warm / call, 2),
        }
    return out


def bench_stats(data: Path, records: int) -> dict[str, Any]:
    log = SqliteAuditLog(data / "stats.sqlite", checkpoint_every=0)
    started = time.perf_counter()
    services = ("ascvd-risk", "cardio-renal-risk", "vancomycin-dosing")
    entries = [
        entry(
            n,
            patient=f"p{n % 5000}",
            service_id=services[n % 3],
            client_tenant=f"hospital-{n % 4}",
            cards=({"uuid": f"c{n}", "summary": "10-year ASCVD risk 12%"},),
        )
        for n in range(records)
    ]
    # Build quickly (1,000 records a transaction, one fsync each): durability is not
    # what is measured here.
    for i in range(0, records, 1000):
        log.record_many(entries[i : i + 1000])
    feedback = [
        {"card": f"c{n}", "outcome": "accepted" if n % 4 else "overridden", "outcomeTimestamp": "t"}
        for n in range(0, records, 2)
    ]
    for service_index, service in enumerate(services):
        mine = [f for f in feedback if int(f["card"][1:]) % 3 == service_index]
        for i in range(0, len(mine), 500):
            log.record_feedback(service, mine[i : i + 500], "https://ehr.example")
    built_s = time.perf_counter() - started

    started = time.perf_counter()
    hooks = log.query(AuditQuery(kind="hook", limit=0))
    fb = log.query(AuditQuery(kind="feedback", limit=0))
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    stats = follow_through(log)
    stats_s = time.perf_counter() - started
    log.close()
    return {
        "hook_records": len(hooks),
        "feedback_records": len(fb),
        "build_s": round(built_s, 1),
        "read_only_s": round(read_s, 2),
        "stats_s": round(stats_s, 2),
        "stats_over_read": round(stats_s / read_s, 2),
        "cards_counted": stats.total.cards,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=12, help="patients (3 calls each)")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        replay = bench_replay(Path(tmp) / "replay", args.calls)
        print(json.dumps({"replay": replay}, indent=2))
        stats = bench_stats(Path(tmp), args.records)
        print(json.dumps({"stats": stats}, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": platform.platform(), "replay": replay, "stats": stats}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
