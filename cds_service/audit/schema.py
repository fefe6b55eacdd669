"""The audit chain's tables and what reads them: the column lists the chain's
statements share, the transaction the chain runs its statements in (``Tx``), the row of
a record, and the store's revisions (``cds_service/audit/migrations``).

One schema for SQLite and PostgreSQL (created by the baseline revision, exactly as
the release before revisions created it). recorded_at is ISO 8601 UTC text with
microseconds, so text order is time order in both. The body is kept as the exact
canonical JSON text (not jsonb, which would renormalise it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
from sqlalchemy import BigInteger, CheckConstraint, Column, Integer, MetaData, Table, Text

from cds_service.audit.chain import BadRecord, StoredAuditRecord
from cds_service.audit.records import AuditQuery, _utc_text
from twin_engine.store.migrate import StoreSchema

metadata = MetaData()

# As the baseline revision creates them; BIGINT seqs are never autoincremented (the
# chain numbers its records itself).
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    *(Column(name, Text) for name in ("hook_instance", "service_id", "patient_id", "status")),
    Column("model_id", Text),
    Column("model_version", Text),
    Column("body", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("record_hash", Text, nullable=False),
)
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("record_hash", Text, nullable=False),
    Column("checkpoint_seq", BigInteger, nullable=False),
)
audit_card = Table(
    "audit_card",
    metadata,
    Column("card_uuid", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("service_id", Text, nullable=False),
)
audit_part = Table(
    "audit_part",
    metadata,
    Column("sha256", Text, primary_key=True),
    Column("content", Text, nullable=False),
)
audit_feedback = Table(
    "audit_feedback",
    metadata,
    Column("card_uuid", Text, primary_key=True),
    Column("outcome", Text, primary_key=True),
    Column("outcome_timestamp", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

_TABLES = {t.name: frozenset(t.columns.keys()) for t in metadata.sorted_tables}

SCHEMA = StoreSchema(
    name="audit",
    versions=Path(__file__).parent / "migrations",
    version_table="twin_cds_revision_audit",
    baseline={"sqlite": _TABLES, "postgresql": _TABLES},
)

_COLUMNS = "seq, kind, recorded_at, body, prev_hash, record_hash"
_QUERY_COLUMNS = "hook_instance, service_id, patient_id, status, model_id, model_version"


class Tx(Protocol):
    """One open database transaction, placeholders written as ``?``."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Select(NamedTuple):
    sql: str
    params: list[Any]


def select_sql(q: AuditQuery, tenant_sql: str | None) -> Select:
    """The statement and parameters of a query's records, in chain order; ``tenant_sql``
    is the store's expression of a record's tenant (needed when ``q.tenant`` is set)."""
    clauses = ["seq > ?"]
    params: list[Any] = [q.after_seq]
    simple = (
        ("patient_id", q.patient_id),
        ("service_id", q.service_id),
        ("model_id", q.model_id),
        ("model_version", q.model_version),
        ("status", q.status),
        ("kind", q.kind),
        ("hook_instance", q.hook_instance),
    )
    for column, value in simple:
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if q.since is not None:
        clauses.append("recorded_at >= ?")
        params.append(_utc_text(q.since))
    if q.until is not None:
        clauses.append("recorded_at < ?")
        params.append(_utc_text(q.until))
    if q.outcome is not None:
        clauses.append(
            "seq IN (SELECT c.seq FROM audit_card c JOIN audit_feedback f "
            "ON f.card_uuid = c.card_uuid WHERE f.outcome = ?)"
        )
        params.append(q.outcome)
    if q.tenant is not None and tenant_sql is not None:
        clauses.append(f"{tenant_sql} = ?")
        params.append(q.tenant)
    # Clauses are fixed strings chosen above; every value is a bound parameter.
    sql = f"SELECT {_COLUMNS} FROM audit_chain WHERE {' AND '.join(clauses)} ORDER BY seq"  # noqa: S608
    if q.limit > 0:
        sql += f" LIMIT {int(q.limit)}"
    return Select(sql, params)


def _record(row: Sequence[Any]) -> StoredAuditRecord:
    """The stored record; one whose body is not a JSON object comes back damaged (its
    ``damage`` says why, its body empty) so that every reader can report it."""
    damage: str | None = None
    try:
        body = orjson.loads(row[3])
    except orjson.JSONDecodeError:
        body, damage = {}, "body is not JSON"
    if not isinstance(body, dict):
        body, damage = {}, "body is not a JSON object"
    return StoredAuditRecord(
        seq=int(row[0]),
        kind=row[1],
        recorded_at=str(row[2]),
        body=body,
        prev_hash=str(row[4]),
        record_hash=str(row[5]),
        damage=damage,
    )


def record_tenant(rec: StoredAuditRecord) -> str | None:
    """The tenant a record belongs to: its CDS client's (hook, feedback) or its EHR's
    (app access); None for records of no tenant (auditor reads, checkpoints)."""
    client = rec.body.get("client")
    if isinstance(client, dict) and isinstance(client.get("tenant"), str):
        return str(client["tenant"])
    tenant = rec.body.get("tenant") if rec.kind == "app-access" else None
    return tenant if isinstance(tenant, str) else None


def _verifiable(row: Sequence[Any]) -> StoredAuditRecord | BadRecord:
    """The record, or why it cannot be checked: a body that is no longer a JSON object
    was changed after it was hashed (the writer only stores objects)."""
    rec = _record(row)
    if rec.damage == "body is not JSON":
        return BadRecord(rec.seq, f"record {rec.seq}: its stored body is not valid JSON")
    if rec.damage:
        return BadRecord(rec.seq, f"record {rec.seq}: its stored body is not a JSON object")
    return rec
