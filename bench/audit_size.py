"""Bytes the audit trail grows by per hook call: the cards as sent vs as stored.

Generated patients through the real app (SQLite), ascvd-risk and cardio-renal-risk on
each. For every hook record: its body with the cards as sent (what a record cost before
repeating card material became parts), the stored body, and the parts it added. Then
the audit database's growth per call, measured on the file after a WAL checkpoint.
Writes bench/results/audit_size.json.

    python bench/audit_size.py [--patients 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The per-call log line (one JSON object a call) would drown the bench's own output.
logging.getLogger("twin_cds.hooks").setLevel(logging.WARNING)
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from cds_service.audit import log as audit_module  # noqa: E402
from cds_service.audit.chain import canonical_json  # noqa: E402
from cds_service.settings import Settings  # noqa: E402
from ehr_sim.patients import generate_patients  # noqa: E402
from tests.conftest import hook_request, prefetch_from_bundle  # noqa: E402
from twin_cds.app import create_app  # noqa: E402

SERVICES = ("ascvd-risk", "cardio-renal-risk")


def _db_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    finally:
        db.close()
    return int(pages) * int(size)


def _calls(client: TestClient, bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        pf = prefetch_from_bundle(bundle)
        for service in SERVICES:
            body = hook_request(pf["patient"]["id"], pf)
            client.post(f"/cds-services/{service}", json=body).raise_for_status()


def _growth_without_parts(bundles: list[dict[str, Any]]) -> int:
    """The same calls with the cards stored inline, as before parts: the baseline."""
    original = audit_module.split_parts
    audit_module.split_parts = lambda body: (body, {})  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp), auth_required=False)
            with TestClient(create_app(settings)) as client:
                start = _db_bytes(settings.audit_db)
                _calls(client, bundles)
                end = _db_bytes(settings.audit_db)
    finally:
        audit_module.split_parts = original
    return round((end - start) / (len(bundles) * len(SERVICES)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()
    bundles = generate_patients(args.patients, seed=5)
    baseline = _growth_without_parts(bundles)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), auth_required=False)
        with TestClient(create_app(settings)) as client:
            start = _db_bytes(settings.audit_db)
            _calls(client, bundles)
            audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
            records = audit.records()
            end = _db_bytes(settings.audit_db)
        db = sqlite3.connect(settings.audit_db)
        try:
            stored = {
                int(s): len(b.encode()) for s, b in db.execute("SELECT seq, body FROM audit_chain")
            }
            parts = [len(c.encode()) for (c,) in db.execute("SELECT content FROM audit_part")]
        finally:
            db.close()
    rows = []
    for service in SERVICES:
        mine = [r for r in records if r.body["service"] == service]
        sent = [
            len(canonical_json({k: v for k, v in r.body.items() if k != "cardStorage"}))
            for r in mine
        ]
        kept = [stored[r.seq] for r in mine]
        rows.append(
            {
                "service": service,
                "calls": len(mine),
                "with_cards": sum(1 for r in mine if r.body["cards"]),
                "body_as_sent_mean_bytes": round(statistics.mean(sent)),
                "body_stored_mean_bytes": round(statistics.mean(kept)),
                "ratio_stored_to_as_sent": round(sum(kept) / sum(sent), 2),
            }
        )
    calls = len(records)
    summary = {
        "calls": calls,
        "parts": len(parts),
        "parts_bytes": sum(parts),
        "bodies_as_sent_bytes_per_call": round(
            sum(
                len(canonical_json({k: v for k, v in r.body.items() if k != "cardStorage"}))
                for r in records
            )
            / calls
        ),
        "stored_bytes_per_call_incl_parts": round((sum(stored.values()) + sum(parts)) / calls),
        "database_growth_bytes_per_call": round((end - start) / calls),
        "database_growth_bytes_per_call_cards_inline": baseline,
        "by_service": rows,
    }
    print(json.dumps(summary, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit_size.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
