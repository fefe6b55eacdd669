"""Bytes the audit trail grows by per hook call, by stored format and by field.

Generated patients through the real app (SQLite), ascvd-risk and cardio-renal-risk on
each, then vancomycin-dosing-sign calls on the dosing tests' patient (drafts of several
doses and intervals). The same calls are written once in each stored format of hook
records (``cds_service.audit.stored``: 0 inline as recorded, 1 card parts, 2 card parts
and tables), and for each: the audit database's growth per call (on the file after a WAL
checkpoint; on PostgreSQL, the audit tables' total size with TOAST and indexes, in
a schema of its own), the stored body per call with and without the parts it added, and per
service the bytes of each field of a record as read and as stored.
Writes bench/results/audit_size.json.

    python bench/audit_size.py [--patients 200] [--dosing 15] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The per-call log line (one JSON object a call) would drown the bench's own output.
logging.getLogger("twin_cds.hooks").setLevel(logging.WARNING)
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from cds_service.audit.chain import canonical_json  # noqa: E402
from cds_service.audit.parts import MARK  # noqa: E402
from cds_service.audit.stored import FORMAT_KEY  # noqa: E402
from cds_service.settings import Settings  # noqa: E402
from ehr_sim.patients import generate_patients  # noqa: E402
from tests.audit.stores import pg_available, pg_schema  # noqa: E402
from tests.conftest import hook_request, prefetch_from_bundle  # noqa: E402
from tests.support.vancomycin import draft_order, order_sign_call  # noqa: E402
from twin_cds.app import create_app  # noqa: E402

RISK = ("ascvd-risk", "cardio-renal-risk")
DOSING = "vancomycin-dosing-sign"
FORMATS = (0, 1, 2)


class _Sqlite:
    """The audit store as a SQLite file: its size after a WAL checkpoint, its rows."""

    def __init__(self, data: Path) -> None:
        self.settings = Settings(data_dir=data, auth_required=False)

    def size(self) -> int:
        db = sqlite3.connect(self.settings.audit_db)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            (size,) = db.execute("PRAGMA page_size").fetchone()
        finally:
            db.close()
        return int(pages) * int(size)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.settings.audit_db)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


class _Postgres:
    """The audit store in a PostgreSQL schema of its own: its tables' total size (heap,
    TOAST and indexes), its rows."""

    TABLES = ("audit_chain", "audit_head", "audit_card", "audit_part", "audit_feedback")

    def __init__(self, data: Path, schema: str) -> None:
        from tests.audit.stores import pg_url

        self.url = pg_url(schema)
        self.settings = Settings(data_dir=data, auth_required=False, database_url=self.url)

    def size(self) -> int:
        tables = ", ".join(f"'{t}'" for t in self.TABLES)
        ((total,),) = self.rows(
            f"SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c "  # noqa: S608
            f"WHERE c.relname IN ({tables}) AND c.relnamespace = current_schema()::regnamespace"
        )
        return int(total)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql).fetchall()


def _dosing_calls(n: int) -> list[dict[str, Any]]:
    """``n`` order-sign calls on the vancomycin patient, each drafting another regimen."""
    regimens = [(dose, every) for every in (12, 24, 8) for dose in (500, 750, 1000, 1250, 1500)]
    return [
        order_sign_call(
            i, draft_order(*regimens[i % len(regimens)], rid=f"draft-{i}"), dialysis=False
        )
        for i in range(n)
    ]


def _field_bytes(body: dict[str, Any]) -> dict[str, int]:
    """Each top-level field's bytes in the canonical body (``"key":value``)."""
    return {k: len(canonical_json({k: v})) - 2 for k, v in body.items()}


def _run(
    fmt: int, backend: str, bundles: list[dict[str, Any]], dosing: list[dict[str, Any]]
) -> dict[str, Any]:
    """All calls written in stored format ``fmt`` on ``backend`` (sqlite, postgres)."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        store: _Sqlite | _Postgres = (
            _Postgres(Path(tmp), stack.enter_context(pg_schema()))
            if backend == "postgres"
            else _Sqlite(Path(tmp))
        )
        with TestClient(create_app(store.settings)) as client:
            audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
            audit.record_format = fmt

            def post(service: str, body: dict[str, Any]) -> None:
                client.post(f"/cds-services/{service}", json=body).raise_for_status()

            sizes = [store.size()]
            for bundle in bundles:
                pf = prefetch_from_bundle(bundle)
                for service in RISK:
                    post(service, hook_request(pf["patient"]["id"], pf))
            sizes.append(store.size())
            for call in dosing:
                post(DOSING, call)
            sizes.append(store.size())
            records = audit.records()
        stored = {int(s): json.loads(b) for s, b in store.rows("SELECT seq, body FROM audit_chain")}
        parts = [len(c.encode()) for (c,) in store.rows("SELECT content FROM audit_part")]
    risk_calls, dosing_calls = len(bundles) * len(RISK), len(dosing)
    out: dict[str, Any] = {
        "database_growth_bytes_per_risk_call": round((sizes[1] - sizes[0]) / risk_calls),
        "database_growth_bytes_per_dosing_call": (
            round((sizes[2] - sizes[1]) / dosing_calls) if dosing_calls else None
        ),
        "parts": len(parts),
        "parts_bytes": sum(parts),
        "stored_body_bytes_per_call_incl_parts": round(
            (sum(len(canonical_json(b)) for b in stored.values()) + sum(parts)) / len(records)
        ),
        "by_service": {},
    }
    for service in (*RISK, DOSING):
        mine = [r for r in records if r.body["service"] == service]
        if not mine:
            continue
        read = defaultdict(list)
        kept = defaultdict(list)
        for r in mine:
            for k, n in _field_bytes(r.body).items():
                read[k].append(n)
            for k, n in _field_bytes(stored[r.seq]).items():
                kept[k].append(n)
        calls = len(mine)
        out["by_service"][service] = {
            "calls": calls,
            "body_read_mean_bytes": round(
                statistics.mean(
                    len(
                        canonical_json(
                            {k: v for k, v in r.body.items() if k not in (MARK, FORMAT_KEY)}
                        )
                    )
                    for r in mine
                )
            ),
            "body_stored_mean_bytes": round(
                statistics.mean(len(canonical_json(stored[r.seq])) for r in mine)
            ),
            # Mean bytes of each field ("key":value) as read and as stored.
            "fields": {
                k: {"read": round(sum(read[k]) / calls), "stored": round(sum(kept[k]) / calls)}
                for k in sorted(set(read) | set(kept), key=lambda k: -sum(read[k] or kept[k]))
            },
        }
    return out


def _ratio(now: float | None, before: float | None) -> float | None:
    return round(now / before, 2) if now is not None and before else None


def _ratios(now: dict[str, Any], release: dict[str, Any]) -> dict[str, float | None]:
    """Format 2 against format 1 (the release before), figure by figure."""
    keys = (
        "database_growth_bytes_per_risk_call",
        "database_growth_bytes_per_dosing_call",
        "stored_body_bytes_per_call_incl_parts",
    )
    return {k: _ratio(now[k], release[k]) for k in keys} | {
        f"body_stored_mean_bytes {s}": _ratio(
            now["by_service"][s]["body_stored_mean_bytes"],
            release["by_service"][s]["body_stored_mean_bytes"],
        )
        for s in now["by_service"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--dosing", type=int, default=15)
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="postgres is skipped when none answers"
    )
    args = parser.parse_args()
    bundles = generate_patients(args.patients, seed=5)
    dosing = _dosing_calls(args.dosing)
    backends = [
        b for b in args.backends.split(",") if b == "sqlite" or (b == "postgres" and pg_available())
    ]
    summary: dict[str, Any] = {"patients": args.patients, "dosing_calls": args.dosing}
    for backend in backends:
        runs = {fmt: _run(fmt, backend, bundles, dosing) for fmt in FORMATS}
        summary[backend] = {
            "formats": {str(f): r for f, r in runs.items()},
            "ratio_format_2_to_1": _ratios(runs[2], runs[1]),
        }
    print(json.dumps(summary, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit_size.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
