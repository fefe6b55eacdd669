"""The audit trail: one hash-chained record per hook call, feedback and auditor read.

A ``hook`` record says which service answered which hook call for which patient, on
which twin version, with which model (id, version, sha256), from which inputs (with
their source resource ids and times), what it computed and why (the explanation), and
which cards it sent. It never holds the access token, the caller's JWT or the raw FHIR
data: the twin version it names is what reconstructs the state the model saw.

Every record, whatever its kind, is one link of a single chain::

    record_hash(n) = sha256(record_hash(n-1) || canonical_json({seq, kind, recordedAt, body}))

so a record that is changed, removed, inserted or moved breaks the chain at the first
bad one, and ``verify`` names it. A plain hash chain can be recomputed by whoever can
write the store; signed checkpoints stop that: every ``checkpoint_every`` records (and
on demand) an Ed25519 signature over the seq and hash of the record before it is
appended as a ``checkpoint`` record. Rewriting history behind a checkpoint then needs
the signing key.

Kinds::

    hook          one CDS Hooks call (AuditEntry)
    feedback      one clinician outcome on a card, joined by card uuid (stored once)
    auditor-read  one read through the auditor API (who, which query, how many records)
    app-access    one clinician's SMART launch of the app (who, which EHR, which patient)
    population-run  one ``twin-cds population build`` (inputs, model shas, counts, timing)
    checkpoint    a signature over the chain so far

The chain lives in a relational store; ``ChainedAuditLog`` (here) holds everything
that does not depend on which one, and ``cds_service.audit.sql`` runs it on SQLite or
PostgreSQL (connections, the lock that serialises appends, ``open_audit_log``). The
record types live in ``records``, the tables in ``schema``, the verification in
``verify``; the hashing and the checkpoint signatures in ``chain``.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from cds_service.audit.chain import (
    GENESIS,
    RECORD_KINDS,
    AuditConfigError,
    AuditError,
    AuditSigner,
    AuditUnavailable,
    AuditWriteError,
    BadRecord,
    ChainReport,
    RecordKind,
    StoredAuditRecord,
    canonical_json,
    generate_demo_signing_key,
    key_id,
    load_signer,
    load_verify_key,
    record_hash,
    text_hash,
)
from cds_service.audit.records import (
    AppAccess,
    AuditEntry,
    AuditorRead,
    AuditorReadAction,
    AuditQuery,
    AuditStatus,
    FeedbackResult,
    ModelUse,
    explanation_for_audit,
    json_object,
    sanitised_feedback,
)
from cds_service.audit.schema import _COLUMNS, Tx, _record, record_tenant, select_sql
from cds_service.audit.stored import (
    CURRENT_FORMAT,
    Written,
    part_refs,
    read_form,
    stored_form,
    written,
)
from cds_service.audit.verify import VerifiableChain

_T = TypeVar("_T")

log = logging.getLogger("twin_cds.audit")
_INSERT_PART = "INSERT INTO audit_part VALUES (?, ?) ON CONFLICT DO NOTHING"
_INSERT_CARD = "INSERT INTO audit_card VALUES (?, ?, ?) ON CONFLICT DO NOTHING"


def _utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class ChainedAuditLog(VerifiableChain):
    """The audit chain over any SQL store; subclasses supply transactions and the lock."""

    #: The stored format of new hook records (``audit.stored``; tests write older ones).
    record_format: int = CURRENT_FORMAT

    #: Told of each hook, auditor-read and app-access record once committed (kind, body,
    #: seq, seconds the append took): the app wires its metrics and call log here.
    on_append: Callable[[RecordKind, dict[str, Any], int, float], None] | None = None

    def __init__(
        self,
        *,
        signer: AuditSigner | None = None,
        checkpoint_every: int = 100,
        clock: Callable[[], str] = _utc_now_text,
    ) -> None:
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        self._clock = clock

    @property
    def signer(self) -> AuditSigner | None:
        return self._signer

    @abstractmethod
    def _transaction(self, work: Callable[[Tx], _T]) -> _T:
        """Run ``work`` in one transaction that holds the chain's append lock from its
        first statement; raise AuditUnavailable when the storage failed (nothing was
        written) and AuditWriteError for any other database error."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A read-only view."""

    @abstractmethod
    def close(self) -> None: ...

    # -- appending

    def _head(self, tx: Tx) -> tuple[int, str]:
        ((seq, digest),) = tx.rows(self._lock_head_sql())
        return int(seq), str(digest)

    @abstractmethod
    def _tenant_sql(self) -> str:
        """The record's tenant (``record_tenant``) as an SQL expression on ``body``."""

    @abstractmethod
    def _lock_head_sql(self) -> str:
        """The chain's head (seq, record_hash), locked until the transaction ends."""

    def _append(
        self,
        tx: Tx,
        kind: RecordKind,
        body: Written,
        columns: Mapping[str, str | None],
    ) -> StoredAuditRecord:
        prev_seq, prev = self._head(tx)
        seq = prev_seq + 1
        recorded_at = self._clock()
        digest = text_hash(prev, recorded_at, body.chained, seq=seq, kind=kind)
        tx.run(
            "INSERT INTO audit_chain (seq, kind, recorded_at, hook_instance, service_id, "
            "patient_id, status, model_id, model_version, body, prev_hash, record_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                kind,
                recorded_at,
                columns.get("hook_instance"),
                columns.get("service_id"),
                columns.get("patient_id"),
                columns.get("status"),
                columns.get("model_id"),
                columns.get("model_version"),
                body.text.decode(),
                prev,
                digest,
            ),
        )
        tx.run("UPDATE audit_head SET seq = ?, record_hash = ? WHERE id = 1", (seq, digest))
        return StoredAuditRecord(seq, recorded_at, body.body, prev, digest, kind)

    def _maybe_checkpoint(self, tx: Tx, last: StoredAuditRecord) -> None:
        if self._signer is None or self._checkpoint_every <= 0:
            return
        ((since,),) = tx.rows("SELECT checkpoint_seq FROM audit_head WHERE id = 1")
        if last.seq - int(since) >= self._checkpoint_every:
            self._append_checkpoint(tx, self._signer)

    def _append_checkpoint(self, tx: Tx, signer: AuditSigner) -> StoredAuditRecord:
        seq, digest = self._head(tx)
        body = signer.sign_checkpoint(seq, digest, self._clock())
        rec = self._append(tx, "checkpoint", written(body), {})
        tx.run("UPDATE audit_head SET checkpoint_seq = ? WHERE id = 1", (rec.seq,))
        return rec

    def _appended(self, rec: StoredAuditRecord, started: float) -> StoredAuditRecord:
        if self.on_append is not None:
            self.on_append(rec.kind, rec.body, rec.seq, time.perf_counter() - started)
        return rec

    def record(self, entry: AuditEntry) -> StoredAuditRecord:
        """Append one hook call; the record, its card index and any checkpoint commit together."""
        started = time.perf_counter()
        return self._appended(self.record_many((entry,))[0], started)

    def record_many(self, entries: Sequence[AuditEntry]) -> list[StoredAuditRecord]:
        """Append hook calls in order in ONE transaction (one commit, one fsync), each as
        ``record`` appends it; all are written or none. ``on_append`` is not told: the
        caller tells it, in each call's own context (``audit.committer``)."""
        works = [self._hook_work(e) for e in entries]
        return self._transaction(lambda tx: [work(tx) for work in works])

    def _hook_work(self, entry: AuditEntry) -> Callable[[Tx], StoredAuditRecord]:
        body = stored_form(entry.to_json(), self.record_format)

        def work(tx: Tx) -> StoredAuditRecord:
            for name, content in body.parts.items():
                tx.run(_INSERT_PART, (name, content.decode()))
            rec = self._append(
                tx,
                "hook",
                body,
                {
                    "hook_instance": entry.hook_instance,
                    "service_id": entry.service_id,
                    "patient_id": entry.patient_id,
                    "status": entry.status,
                    "model_id": entry.model.model_id if entry.model else None,
                    "model_version": entry.model.version if entry.model else None,
                },
            )
            for card in entry.cards:
                if card.get("uuid"):
                    tx.run(_INSERT_CARD, (card["uuid"], rec.seq, entry.service_id))
            self._maybe_checkpoint(tx, rec)
            return rec

        return work

    def record_feedback(
        self, service_id: str, entries: list[dict[str, Any]], client_iss: str | None
    ) -> FeedbackResult:
        """Append each new feedback as a chain record; a repeated (card, outcome,
        timestamp) is not appended again, and feedback on a card we never sent is not kept."""

        def work(tx: Tx) -> FeedbackResult:
            stored = duplicates = 0
            unknown: list[str] = []
            last: StoredAuditRecord | None = None
            for e in entries:
                card = tx.rows(
                    "SELECT c.seq, h.hook_instance, h.patient_id, h.body FROM audit_card c "
                    "JOIN audit_chain h ON h.seq = c.seq "
                    "WHERE c.card_uuid = ? AND c.service_id = ?",
                    (e["card"], service_id),
                )
                if not card:
                    unknown.append(e["card"])
                    continue
                hook_seq, hook_instance, patient_id, hook_body = card[0]
                # Only the client a card was sent to may report what its user did with it.
                hook_client = json_object(hook_body).get("client") or {}
                sent_to = hook_client.get("iss")
                if sent_to != client_iss:
                    unknown.append(e["card"])
                    continue
                seen = tx.rows(
                    "SELECT 1 FROM audit_feedback WHERE card_uuid = ? AND outcome = ? "
                    "AND outcome_timestamp = ?",
                    (e["card"], e["outcome"], e["outcomeTimestamp"]),
                )
                if seen:
                    duplicates += 1
                    continue
                body = {
                    "service": service_id,
                    "card": e["card"],
                    "hookRecord": int(hook_seq),
                    "hookInstance": hook_instance,
                    "patient": patient_id,
                    "client": {"iss": client_iss}
                    # The hook's tenant, so a tenant's auditor sees the feedback too.
                    | ({"tenant": hook_client["tenant"]} if hook_client.get("tenant") else {}),
                    "feedback": sanitised_feedback(e),
                }
                last = self._append(
                    tx,
                    "feedback",
                    written(body),
                    {
                        "hook_instance": hook_instance,
                        "service_id": service_id,
                        "patient_id": patient_id,
                        "status": e["outcome"],
                    },
                )
                tx.run(
                    "INSERT INTO audit_feedback VALUES (?, ?, ?, ?)",
                    (e["card"], e["outcome"], e["outcomeTimestamp"], last.seq),
                )
                stored += 1
            if last is not None:
                self._maybe_checkpoint(tx, last)
            return FeedbackResult(stored, duplicates, tuple(unknown))

        return self._transaction(work)

    def _append_one(
        self, kind: RecordKind, body: dict[str, Any], columns: Mapping[str, str | None]
    ) -> StoredAuditRecord:
        """Append one record (and any checkpoint due) in a transaction of its own."""
        form = written(body)

        def work(tx: Tx) -> StoredAuditRecord:
            rec = self._append(tx, kind, form, columns)
            self._maybe_checkpoint(tx, rec)
            return rec

        return self._transaction(work)

    def record_auditor_read(self, read: AuditorRead) -> StoredAuditRecord:
        """Append one auditor read (the auditor API calls this before answering)."""
        patient = read.query.get("patient_id")
        started = time.perf_counter()
        columns = {
            "patient_id": patient if isinstance(patient, str) else None,
            "status": read.action,
        }
        return self._appended(self._append_one("auditor-read", read.to_json(), columns), started)

    def record_app_access(self, access: AppAccess) -> StoredAuditRecord:
        """Append one clinician's launch of the app on a patient (before it is shown)."""
        started = time.perf_counter()
        columns = {"patient_id": access.patient_id, "status": access.launch}
        return self._appended(self._append_one("app-access", access.to_json(), columns), started)

    def record_population_run(self, body: dict[str, Any]) -> StoredAuditRecord:
        """Append one population build: its inputs, models, counts and timing (no rows)."""
        return self._append_one("population-run", body, {"status": str(body.get("status") or "")})

    def checkpoint(self) -> StoredAuditRecord:
        """Sign the chain as it is now (on demand)."""
        if self._signer is None:
            raise AuditConfigError(
                "no audit signing key configured (TWIN_CDS_AUDIT_SIGNING_KEY_FILE); "
                "checkpoints cannot be signed"
            )
        signer = self._signer
        return self._transaction(lambda tx: self._append_checkpoint(tx, signer))

    # -- reading

    def feedback_for(self, card_uuid: str) -> list[dict[str, Any]]:
        with self._read() as tx:
            rows = tx.rows(
                "SELECT c.seq, c.kind, c.recorded_at, c.body, c.prev_hash, c.record_hash "
                "FROM audit_feedback f JOIN audit_chain c ON c.seq = f.seq "
                "WHERE f.card_uuid = ? ORDER BY f.seq",
                (card_uuid,),
            )
        return [
            rec.body["feedback"] if rec.damage is None else rec.damaged()
            for rec in (_record(row) for row in rows)
        ]

    def records(
        self,
        *,
        patient_id: str | None = None,
        hook_instance: str | None = None,
        kind: RecordKind | None = "hook",
    ) -> list[StoredAuditRecord]:
        """Records in chain order; by default the hook calls only (``kind=None``: all)."""
        return list(
            self._select(
                AuditQuery(patient_id=patient_id, hook_instance=hook_instance, kind=kind, limit=0)
            )
        )

    def query(self, q: AuditQuery) -> list[StoredAuditRecord]:
        return list(self._select(q))

    def get(self, seq: int) -> StoredAuditRecord | None:
        with self._read() as tx:
            rows = tx.rows(f"SELECT {_COLUMNS} FROM audit_chain WHERE seq = ?", (seq,))  # noqa: S608 - fixed column list
        return self._joined([_record(rows[0])])[0] if rows else None

    def _parts(self, names: set[str]) -> dict[str, bytes]:
        """The stored parts of these names (missing ones are simply absent)."""
        found: dict[str, bytes] = {}
        ordered = sorted(names)
        with self._read() as tx:
            for i in range(0, len(ordered), 500):
                batch = ordered[i : i + 500]
                marks = ", ".join("?" * len(batch))
                rows = tx.rows(
                    f"SELECT sha256, content FROM audit_part WHERE sha256 IN ({marks})",  # noqa: S608 - placeholders only
                    batch,
                )
                found.update((str(n), str(c).encode()) for n, c in rows)
        return found

    def _joined(self, records: list[StoredAuditRecord]) -> list[StoredAuditRecord]:
        """Records as written: hook bodies from their stored form (parts put back in place)."""
        kept = {r.seq for r in records if r.kind == "hook" and isinstance(r.body, dict)}
        names = set().union(*(part_refs(r.body) for r in records if r.seq in kept))
        parts = {n: orjson.loads(c) for n, c in self._parts(names).items()} if names else {}
        return [_read(r, parts) if r.seq in kept else r for r in records]

    def cards_of(self, seq: int) -> list[str]:
        with self._read() as tx:
            rows = tx.rows(
                "SELECT card_uuid FROM audit_card WHERE seq = ? ORDER BY card_uuid", (seq,)
            )
        return [str(r[0]) for r in rows]

    def _select(self, q: AuditQuery) -> Iterator[StoredAuditRecord]:
        with self._read() as tx:
            try:
                rows = tx.rows(*select_sql(q, self._tenant_sql() if q.tenant else None))
            except AuditUnavailable:
                raise
            except AuditWriteError:
                if q.tenant is None:
                    raise
                # A damaged body (not JSON) the database refuses to read as JSON: the
                # tenant is then told apart here, record by record (a damaged record
                # proves no tenant).
                rows = self._tenant_rows(tx, q)
        return iter(self._joined([_record(r) for r in rows]))

    def _tenant_rows(self, tx: Tx, q: AuditQuery) -> list[tuple[Any, ...]]:
        wanted: list[tuple[Any, ...]] = []
        for row in tx.rows(*select_sql(replace(q, limit=0, tenant=None), None)):
            if record_tenant(_record(row)) == q.tenant:
                wanted.append(row)
                if len(wanted) == q.limit:
                    break
        return wanted


def _read(rec: StoredAuditRecord, parts: dict[str, Any]) -> StoredAuditRecord:
    """A hook record as written; damaged when its stored form no longer reads back."""
    try:
        return replace(rec, body=read_form(rec.body, parts))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        damage = "stored form does not read back (a part of it is missing or changed)"
        return replace(rec, body={}, damage=damage)


AuditLog = ChainedAuditLog

__all__ = [
    "GENESIS",
    "RECORD_KINDS",
    "AppAccess",
    "AuditConfigError",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditQuery",
    "AuditSigner",
    "AuditStatus",
    "AuditUnavailable",
    "AuditWriteError",
    "AuditorRead",
    "AuditorReadAction",
    "BadRecord",
    "ChainReport",
    "ChainedAuditLog",
    "FeedbackResult",
    "ModelUse",
    "RecordKind",
    "StoredAuditRecord",
    "Tx",
    "canonical_json",
    "explanation_for_audit",
    "generate_demo_signing_key",
    "key_id",
    "load_signer",
    "load_verify_key",
    "record_hash",
    "record_tenant",
]
