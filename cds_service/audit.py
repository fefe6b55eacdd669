"""The audit trail: one record per hook call, appended to SQLite in the data directory.

A record says which service answered which hook call for which patient, on which
twin version, with which model (id, version, sha256), from which inputs, and what
cards it sent. It never holds the access token or the raw FHIR data: the twin
version it names is what reconstructs the state the model saw.

Each record carries the sha256 of its canonical JSON chained to the previous
record's hash, so a later change to a stored record is detectable.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

AuditStatus = Literal["ok", "no-card", "data-unavailable", "bad-request", "error"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_record (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    service_id TEXT NOT NULL,
    patient_id TEXT,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    record_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_patient ON audit_record(patient_id, recorded_at);
CREATE INDEX IF NOT EXISTS audit_by_hook_instance ON audit_record(hook_instance);
CREATE TABLE IF NOT EXISTS card_sent (
    card_uuid TEXT PRIMARY KEY,
    audit_seq INTEGER NOT NULL REFERENCES audit_record(seq),
    service_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    card_uuid TEXT NOT NULL,
    service_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL,
    client_iss TEXT,
    body TEXT NOT NULL,
    UNIQUE (card_uuid, outcome, outcome_timestamp)
);
"""

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class ModelUse:
    model_id: str
    version: str
    sha256: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What one hook call did, as the auditor will read it."""

    hook_instance: str
    hook: str
    service_id: str
    patient_id: str | None
    status: AuditStatus
    duration_ms: float
    twin_version: int | None = None
    twin_hash: str | None = None
    model: ModelUse | None = None
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: dict[str, float] | None = None
    missing: tuple[str, ...] = ()
    data_problems: tuple[str, ...] = ()
    cards: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    # Who called, as their JWT proved it; the token itself is never kept.
    client_iss: str | None = None
    client_tenant: str | None = None
    client_jti: str | None = None
    user_id: str | None = None
    encounter_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "hookInstance": self.hook_instance,
            "hook": self.hook,
            "service": self.service_id,
            "client": {
                "iss": self.client_iss,
                "tenant": self.client_tenant,
                "jti": self.client_jti,
            },
            "user": self.user_id,
            "patient": self.patient_id,
            "encounter": self.encounter_id,
            "status": self.status,
            "durationMs": round(self.duration_ms, 3),
            "twin": (
                {"version": self.twin_version, "contentHash": self.twin_hash}
                if self.twin_version is not None
                else None
            ),
            "model": (
                {
                    "id": self.model.model_id,
                    "version": self.model.version,
                    "sha256": self.model.sha256,
                }
                if self.model
                else None
            ),
            "inputs": list(self.inputs),
            "outputs": self.outputs,
            "missing": list(self.missing),
            "dataProblems": list(self.data_problems),
            "cards": list(self.cards),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    stored: int
    duplicates: int
    unknown_cards: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredAuditRecord:
    seq: int
    recorded_at: str
    body: dict[str, Any]
    prev_hash: str
    record_hash: str


def record_hash(prev_hash: str, recorded_at: str, body: dict[str, Any]) -> str:
    """sha256 over the previous hash and the record's canonical JSON (sorted keys)."""
    canonical = orjson.dumps({"recordedAt": recorded_at, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + canonical).hexdigest()


class SqliteAuditLog:
    """Append-only audit records in one SQLite file (WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        yield db

    def record(self, entry: AuditEntry) -> StoredAuditRecord:
        """Append one record; the write and the chain link happen in one transaction."""
        body = entry.to_json()
        recorded_at = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._connect() as db:
            # BEGIN IMMEDIATE takes the write lock before reading the chain's tip, so
            # two writers cannot both link to the same previous record.
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT record_hash FROM audit_record ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                prev = row[0] if row else GENESIS
                digest = record_hash(prev, recorded_at, body)
                cur = db.execute(
                    "INSERT INTO audit_record (recorded_at, hook_instance, service_id, "
                    "patient_id, status, body, prev_hash, record_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        recorded_at,
                        entry.hook_instance,
                        entry.service_id,
                        entry.patient_id,
                        entry.status,
                        orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode(),
                        prev,
                        digest,
                    ),
                )
                seq = int(cur.lastrowid or 0)
                # Index the cards sent so feedback can be joined to the call that made them.
                db.executemany(
                    "INSERT OR IGNORE INTO card_sent VALUES (?, ?, ?)",
                    [(c["uuid"], seq, entry.service_id) for c in entry.cards if c.get("uuid")],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return StoredAuditRecord(seq, recorded_at, body, prev, digest)

    def record_feedback(
        self, service_id: str, entries: list[dict[str, Any]], client_iss: str | None
    ) -> FeedbackResult:
        """Store feedback once: a repeated (card, outcome, timestamp) is not stored again."""
        received_at = datetime.now(UTC).isoformat(timespec="microseconds")
        stored = duplicates = 0
        unknown: list[str] = []
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for e in entries:
                    known = db.execute(
                        "SELECT 1 FROM card_sent WHERE card_uuid = ? AND service_id = ?",
                        (e["card"], service_id),
                    ).fetchone()
                    if known is None:
                        unknown.append(e["card"])
                        continue
                    cur = db.execute(
                        "INSERT OR IGNORE INTO feedback (card_uuid, service_id, outcome, "
                        "outcome_timestamp, received_at, client_iss, body) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            e["card"],
                            service_id,
                            e["outcome"],
                            e["outcomeTimestamp"],
                            received_at,
                            client_iss,
                            orjson.dumps(e, option=orjson.OPT_SORT_KEYS).decode(),
                        ),
                    )
                    if cur.rowcount:
                        stored += 1
                    else:
                        duplicates += 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return FeedbackResult(stored, duplicates, tuple(unknown))

    def feedback_for(self, card_uuid: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT body FROM feedback WHERE card_uuid = ? ORDER BY seq", (card_uuid,)
            ).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def records(
        self, *, patient_id: str | None = None, hook_instance: str | None = None
    ) -> list[StoredAuditRecord]:
        query = "SELECT seq, recorded_at, body, prev_hash, record_hash FROM audit_record"
        clauses: list[str] = []
        params: list[str] = []
        if patient_id is not None:
            clauses.append("patient_id = ?")
            params.append(patient_id)
        if hook_instance is not None:
            clauses.append("hook_instance = ?")
            params.append(hook_instance)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY seq", params).fetchall()
        return [StoredAuditRecord(r[0], r[1], orjson.loads(r[2]), r[3], r[4]) for r in rows]

    def verify_chain(self) -> int | None:
        """The seq of the first record whose hash or link is wrong, or None when intact."""
        prev = GENESIS
        for rec in self.records():
            if rec.prev_hash != prev or record_hash(prev, rec.recorded_at, rec.body) != (
                rec.record_hash
            ):
                return rec.seq
            prev = rec.record_hash
        return None
