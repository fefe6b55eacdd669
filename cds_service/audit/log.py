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

The chain lives in a relational store; ``ChainedAuditLog`` holds everything that does
not depend on which one, and ``SqliteAuditLog`` (here) and ``PostgresAuditLog``
(``audit_store_pg``) add connections and the lock that serialises appends.
The hashing, the checkpoint signatures and the chain walk live in ``audit_chain``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
    _Verifier,
    canonical_json,
    generate_demo_signing_key,
    key_id,
    load_signer,
    load_verify_key,
    record_hash,
)
from cds_service.audit.parts import (
    MARK,
    MARK_VALUE,
    join_parts,
    part_name,
    part_refs,
    split_parts,
)
from twin_engine.storage import sqlite_storage_failure

if TYPE_CHECKING:
    from cds_service.settings import Settings

_T = TypeVar("_T")

log = logging.getLogger("twin_cds.audit")

AuditStatus = Literal["ok", "no-card", "data-unavailable", "bad-request", "error"]

# One schema for SQLite and PostgreSQL. recorded_at is ISO 8601 UTC text with
# microseconds, so text order is time order in both. The body is kept as the exact
# canonical JSON text (not jsonb, which would renormalise it).
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_chain (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        hook_instance TEXT,
        service_id TEXT,
        patient_id TEXT,
        status TEXT,
        model_id TEXT,
        model_version TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        record_hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_chain_patient ON audit_chain (patient_id, recorded_at)",
    "CREATE INDEX IF NOT EXISTS audit_chain_time ON audit_chain (recorded_at)",
    "CREATE INDEX IF NOT EXISTS audit_chain_hook ON audit_chain (hook_instance)",
    "CREATE INDEX IF NOT EXISTS audit_chain_model ON audit_chain (model_id, model_version)",
    # The chain's tip, read under a lock by every append. Not part of the hashed chain;
    # verify compares it with the last record, which catches a naive truncation.
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        record_hash TEXT NOT NULL,
        checkpoint_seq BIGINT NOT NULL
    )""",
    # GENESIS is a constant of 64 zeros, not input.
    "INSERT INTO audit_head VALUES (1, 0, '"  # noqa: S608
    + GENESIS
    + "', 0) ON CONFLICT DO NOTHING",
    # Indexes derived from the chain: which record sent a card, and which feedback is
    # already stored (idempotency). Both are rebuilt-able from the chain bodies.
    """CREATE TABLE IF NOT EXISTS audit_card (
        card_uuid TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        service_id TEXT NOT NULL
    )""",
    # Card material every call repeats, stored once by its sha256 (audit_parts). The
    # chained body names each part, so a changed part no longer matches its name.
    """CREATE TABLE IF NOT EXISTS audit_part (
        sha256 TEXT PRIMARY KEY,
        content TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_feedback (
        card_uuid TEXT NOT NULL,
        outcome TEXT NOT NULL,
        outcome_timestamp TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (card_uuid, outcome, outcome_timestamp)
    )""",
)

_SQLITE_APPEND_ONLY = (
    """CREATE TRIGGER IF NOT EXISTS audit_chain_no_update BEFORE UPDATE ON audit_chain
       BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_chain_no_delete BEFORE DELETE ON audit_chain
       BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END""",
)

_COLUMNS = "seq, kind, recorded_at, body, prev_hash, record_hash"


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
    #: The twin store key when it is not the patient id (several tenants).
    twin_key: str | None = None
    model: ModelUse | None = None
    #: Further models the same call ran (e.g. PCE and KFRE beside PREVENT).
    other_models: tuple[ModelUse, ...] = ()
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
    # Exact Shapley contributions to the primary output: {feature, value,
    # baselineValue, contribution} each (see ``explanation_for_audit``).
    explanation: tuple[dict[str, Any], ...] = ()
    #: What replay needs beyond the twin and the models (the day the features were
    #: derived, the deployment settings the cards depend on, the PK history); its
    #: contract is ``cds_service.audit.replay``'s. Absent from the record when None.
    replay_basis: dict[str, Any] | None = None

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
                | ({"storeKey": self.twin_key} if self.twin_key else {})
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
            **(
                {
                    "otherModels": [
                        {"id": m.model_id, "version": m.version, "sha256": m.sha256}
                        for m in self.other_models
                    ]
                }
                if self.other_models
                else {}
            ),
            "inputs": list(self.inputs),
            "outputs": self.outputs,
            "explanation": list(self.explanation),
            "missing": list(self.missing),
            "dataProblems": list(self.data_problems),
            "cards": list(self.cards),
            "error": self.error,
            **({"replayBasis": self.replay_basis} if self.replay_basis is not None else {}),
        }


class _FactorLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def baseline_value(self) -> float: ...
    @property
    def contribution(self) -> float: ...


def explanation_for_audit(factors: Iterable[_FactorLike]) -> tuple[dict[str, Any], ...]:
    """An assessment's factors as the audit keeps them (numbers and names only)."""
    return tuple(
        {
            "feature": f.name,
            "value": f.value,
            "baselineValue": f.baseline_value,
            "contribution": f.contribution,
        }
        for f in factors
    )


#: What an auditor did: the API's and the console's reads alike.
AuditorReadAction = Literal["query", "record", "export", "verify", "replay", "stats", "selfcheck"]


@dataclass(frozen=True, slots=True)
class AuditorRead:
    """One read through the auditor API: who, what they asked, what they got (ids only)."""

    auditor_iss: str
    auditor_sub: str
    token_jti: str | None
    action: AuditorReadAction
    query: dict[str, Any]
    returned: int
    seqs: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "auditor": {"iss": self.auditor_iss, "sub": self.auditor_sub, "jti": self.token_jti},
            "action": self.action,
            "query": self.query,
            "returned": self.returned,
            "seqs": list(self.seqs),
        }


@dataclass(frozen=True, slots=True)
class AppAccess:
    """A clinician opened a patient's twin in the app (a completed SMART launch)."""

    ehr: str  # the FHIR server (iss) the launch came from
    client_id: str
    user: str | None  # fhirUser (or sub) from the verified id_token
    patient_id: str
    encounter_id: str | None
    tenant: str | None  # the twin store's tenant for that EHR
    launch: Literal["ehr", "standalone"]
    app_context: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ehr": self.ehr,
            "clientId": self.client_id,
            "user": self.user,
            "patient": self.patient_id,
            "encounter": self.encounter_id,
            "tenant": self.tenant,
            "launch": self.launch,
            "appContext": self.app_context,
        }


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    stored: int
    duplicates: int
    unknown_cards: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What an auditor may ask for; every field narrows the result (None: any)."""

    patient_id: str | None = None
    service_id: str | None = None
    model_id: str | None = None
    model_version: str | None = None
    status: str | None = None
    #: The clinician's feedback outcome on a card of the record (accepted, overridden).
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: RecordKind | None = "hook"
    hook_instance: str | None = None
    after_seq: int = 0
    limit: int = 1000
    #: Only records of this tenant (the CDS client's, or the app launch's EHR's).
    tenant: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = _utc_text(value)
            if value is not None:
                out[name] = value
        return out


def _utc_text(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- the store-independent log


class Tx(Protocol):
    """One open database transaction, placeholders written as ``?``."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


def _record(row: Sequence[Any]) -> StoredAuditRecord:
    return StoredAuditRecord(
        seq=int(row[0]),
        kind=row[1],
        recorded_at=str(row[2]),
        body=orjson.loads(row[3]),
        prev_hash=str(row[4]),
        record_hash=str(row[5]),
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
    try:
        rec = _record(row)
    except orjson.JSONDecodeError:
        return BadRecord(int(row[0]), f"record {row[0]}: its stored body is not valid JSON")
    if not isinstance(rec.body, dict):
        return BadRecord(int(row[0]), f"record {row[0]}: its stored body is not a JSON object")
    return rec


def _utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _json_object(text: object) -> dict[str, Any]:
    value = orjson.loads(text) if isinstance(text, str | bytes) else text
    return value if isinstance(value, dict) else {}


def _sanitised_feedback(entry: dict[str, Any]) -> dict[str, Any]:
    """The feedback as kept: coded outcome and reason; the clinician's free-text comment
    is dropped (minimal PHI: nothing beyond what the card showed)."""
    kept: dict[str, Any] = {
        k: entry[k] for k in ("card", "outcome", "outcomeTimestamp") if k in entry
    }
    reason = entry.get("overrideReason")
    if isinstance(reason, dict):
        kept["overrideReason"] = {k: v for k, v in reason.items() if k != "userComment"}
        if reason.get("userComment"):
            kept["overrideReason"]["userCommentGiven"] = True
    if "acceptedSuggestions" in entry:
        kept["acceptedSuggestions"] = entry["acceptedSuggestions"]
    return kept


class ChainedAuditLog(ABC):
    """The audit chain over any SQL store; subclasses supply transactions and the lock."""

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

    def _tenant_sql(self) -> str:
        """The record's tenant (``record_tenant``) as an SQL expression on ``body``."""
        return (
            "COALESCE(json_extract(body, '$.client.tenant'), "
            "CASE WHEN kind = 'app-access' THEN json_extract(body, '$.tenant') END)"
        )

    def _lock_head_sql(self) -> str:
        return "SELECT seq, record_hash FROM audit_head WHERE id = 1"

    def _append(
        self,
        tx: Tx,
        kind: RecordKind,
        body: dict[str, Any],
        columns: dict[str, str | None],
    ) -> StoredAuditRecord:
        prev_seq, prev = self._head(tx)
        seq = prev_seq + 1
        recorded_at = self._clock()
        digest = record_hash(prev, recorded_at, body, seq=seq, kind=kind)
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
                canonical_json(body).decode(),
                prev,
                digest,
            ),
        )
        tx.run("UPDATE audit_head SET seq = ?, record_hash = ? WHERE id = 1", (seq, digest))
        return StoredAuditRecord(seq, recorded_at, body, prev, digest, kind)

    def _maybe_checkpoint(self, tx: Tx, last: StoredAuditRecord) -> None:
        if self._signer is None or self._checkpoint_every <= 0:
            return
        ((since,),) = tx.rows("SELECT checkpoint_seq FROM audit_head WHERE id = 1")
        if last.seq - int(since) >= self._checkpoint_every:
            self._append_checkpoint(tx, self._signer)

    def _append_checkpoint(self, tx: Tx, signer: AuditSigner) -> StoredAuditRecord:
        seq, digest = self._head(tx)
        body = signer.sign_checkpoint(seq, digest, self._clock())
        rec = self._append(tx, "checkpoint", body, {})
        tx.run("UPDATE audit_head SET checkpoint_seq = ? WHERE id = 1", (rec.seq,))
        return rec

    def _appended(self, rec: StoredAuditRecord, started: float) -> StoredAuditRecord:
        if self.on_append is not None:
            self.on_append(rec.kind, rec.body, rec.seq, time.perf_counter() - started)
        return rec

    def record(self, entry: AuditEntry) -> StoredAuditRecord:
        """Append one hook call; the record, its card index and any checkpoint commit together."""
        started = time.perf_counter()
        body = entry.to_json()
        # Marked (and so hashed in its stored form) only when some card material is a part.
        stored, parts = split_parts({**body, MARK: MARK_VALUE}) if entry.cards else (body, {})
        body = stored if parts else body

        def work(tx: Tx) -> StoredAuditRecord:
            for name, content in parts.items():
                tx.run(
                    "INSERT INTO audit_part VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (name, content.decode()),
                )
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
                    tx.run(
                        "INSERT INTO audit_card VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        (card["uuid"], rec.seq, entry.service_id),
                    )
            self._maybe_checkpoint(tx, rec)
            return rec

        return self._appended(self._transaction(work), started)

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
                hook_client = _json_object(hook_body).get("client") or {}
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
                    "feedback": _sanitised_feedback(e),
                }
                last = self._append(
                    tx,
                    "feedback",
                    body,
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

    def record_auditor_read(self, read: AuditorRead) -> StoredAuditRecord:
        """Append one auditor read (the auditor API calls this before answering)."""
        patient = read.query.get("patient_id")
        started = time.perf_counter()

        def work(tx: Tx) -> StoredAuditRecord:
            rec = self._append(
                tx,
                "auditor-read",
                read.to_json(),
                {
                    "patient_id": patient if isinstance(patient, str) else None,
                    "status": read.action,
                },
            )
            self._maybe_checkpoint(tx, rec)
            return rec

        return self._appended(self._transaction(work), started)

    def record_app_access(self, access: AppAccess) -> StoredAuditRecord:
        """Append one clinician's launch of the app on a patient (before it is shown)."""
        started = time.perf_counter()

        def work(tx: Tx) -> StoredAuditRecord:
            rec = self._append(
                tx,
                "app-access",
                access.to_json(),
                {"patient_id": access.patient_id, "status": access.launch},
            )
            self._maybe_checkpoint(tx, rec)
            return rec

        return self._appended(self._transaction(work), started)

    def record_population_run(self, body: dict[str, Any]) -> StoredAuditRecord:
        """Append one population build: its inputs, models, counts and timing (no rows)."""

        def work(tx: Tx) -> StoredAuditRecord:
            rec = self._append(
                tx, "population-run", body, {"status": str(body.get("status") or "")}
            )
            self._maybe_checkpoint(tx, rec)
            return rec

        return self._transaction(work)

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
                "SELECT c.body FROM audit_feedback f JOIN audit_chain c ON c.seq = f.seq "
                "WHERE f.card_uuid = ? ORDER BY f.seq",
                (card_uuid,),
            )
        return [orjson.loads(r[0])["feedback"] for r in rows]

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
        """Records whose cards are as sent: stored parts put back in place."""

        def hook(r: StoredAuditRecord) -> bool:
            return r.kind == "hook" and isinstance(r.body, dict)

        names = set().union(*(part_refs(r.body) for r in records if hook(r)))
        if not names:
            return records
        parts = {n: orjson.loads(c) for n, c in self._parts(names).items()}
        return [replace(r, body=join_parts(r.body, parts)) if hook(r) else r for r in records]

    def cards_of(self, seq: int) -> list[str]:
        with self._read() as tx:
            rows = tx.rows(
                "SELECT card_uuid FROM audit_card WHERE seq = ? ORDER BY card_uuid", (seq,)
            )
        return [str(r[0]) for r in rows]

    def _select(self, q: AuditQuery) -> Iterator[StoredAuditRecord]:
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
        if q.tenant is not None:
            clauses.append(f"{self._tenant_sql()} = ?")
            params.append(q.tenant)
        # Clauses are fixed strings chosen above; every value is a bound parameter.
        sql = f"SELECT {_COLUMNS} FROM audit_chain WHERE {' AND '.join(clauses)} ORDER BY seq"  # noqa: S608
        if q.limit > 0:
            sql += f" LIMIT {int(q.limit)}"
        with self._read() as tx:
            rows = tx.rows(sql, params)
        return iter(self._joined([_record(r) for r in rows]))

    def _walk(
        self, batch: int = 2000
    ) -> Iterator[tuple[StoredAuditRecord | BadRecord, tuple[Any, ...]]]:
        """Records with their query columns, in seq order, in batches; a record whose
        stored body is not a JSON object comes as the BadRecord it is."""
        after = 0
        while True:
            with self._read() as tx:
                rows = tx.rows(
                    f"SELECT {_COLUMNS}, {_QUERY_COLUMNS} FROM audit_chain "  # noqa: S608
                    f"WHERE seq > ? ORDER BY seq LIMIT {int(batch)}",
                    (after,),
                )
            if not rows:
                return
            for row in rows:
                yield _verifiable(row), tuple(row[6:])
            after = int(rows[-1][0])

    def verify(self, verify_key: Ed25519PublicKey | None = None) -> ChainReport:
        """Walk the whole chain; name the first bad record and why."""
        v = _Verifier(verify_key if verify_key is not None else self._public_key())
        bad: BadRecord | None = None
        sent: dict[str, set[int]] = {}
        checked_parts: set[str] = set()
        for rec, columns in self._walk():
            if isinstance(rec, BadRecord):
                bad = rec
                break
            bad = (
                v.step(rec)
                or _columns_disagree(rec, columns, sent)
                or self._parts_disagree(rec, checked_parts)
            )
            if bad is not None:
                break
        if bad is None:
            bad = self._check_head(v) or self._check_card_index(sent, v.prev_seq)
        if bad is None and v.verify_key is not None and self._checkpoint_every > 0:
            # With a key, checkpoints are expected every N records; a longer unsigned run
            # means checkpoints were dropped and the chain rebuilt without them.
            uncovered = v.prev_seq - v.last_checkpoint
            if uncovered > self._checkpoint_every + 1:
                bad = BadRecord(
                    v.last_checkpoint + self._checkpoint_every + 1,
                    f"{uncovered} records follow the last signed checkpoint (seq "
                    f"{v.last_checkpoint}) although one is written every "
                    f"{self._checkpoint_every}: checkpoints were removed or never signed",
                )
        warnings = list(v.warnings)
        if v.unchecked:
            warnings.append(
                f"{v.unchecked} checkpoint signature(s) not checked: no verify key configured "
                "(TWIN_CDS_AUDIT_VERIFY_KEY_FILE or TWIN_CDS_AUDIT_SIGNING_KEY_FILE)"
            )
        if v.checkpoints == 0:
            warnings.append(
                "no signed checkpoints: the chain proves order and integrity, but whoever "
                "can write the store could recompute it (configure an audit signing key)"
            )
        elif v.prev_seq not in (v.signed_through, v.last_checkpoint):
            warnings.append(
                f"records after seq {v.signed_through} are not yet covered by a signature"
            )
        return ChainReport(
            records=v.count,
            last_seq=v.prev_seq,
            checkpoints=v.checkpoints,
            signatures_checked=v.checked,
            signed_through=v.signed_through,
            first_bad=bad,
            warnings=tuple(warnings),
        )

    def verify_chain(self) -> int | None:
        """The seq of the first record whose hash or link is wrong, or None when intact."""
        report = self.verify()
        return report.first_bad.seq if report.first_bad else None

    def _parts_disagree(self, rec: StoredAuditRecord, checked: set[str]) -> BadRecord | None:
        """Every part a record names must be stored, and hash to its name."""
        hook = rec.kind == "hook" and isinstance(rec.body, dict)
        names = part_refs(rec.body) - checked if hook else set()
        if not names:
            return None
        found = self._parts(names)
        for name in sorted(names):
            content = found.get(name)
            if content is None or part_name(content) != name:
                what = "is missing" if content is None else "does not match its sha256"
                return BadRecord(rec.seq, f"record {rec.seq}: card part {name[:12]} {what}")
        checked.update(names)
        return None

    def _public_key(self) -> Ed25519PublicKey | None:
        return self._signer.public_key if self._signer else None

    def _check_head(self, v: _Verifier) -> BadRecord | None:
        """The head must name the last record. One statement, so one snapshot: records
        appended while verify walked the chain do not look like tampering."""
        with self._read() as tx:
            ((head, digest, last, last_hash),) = tx.rows(
                "SELECT h.seq, h.record_hash, (SELECT MAX(seq) FROM audit_chain), "
                "(SELECT record_hash FROM audit_chain WHERE seq = h.seq) "
                "FROM audit_head h WHERE h.id = 1"
            )
        last = int(last or 0)
        if int(head) < v.prev_seq or last != int(head) or (head and last_hash != digest):
            return BadRecord(
                min(int(head), last) + 1,
                f"the chain ends at seq {last} but its head says {head}: records at the "
                "end were deleted, or the head was changed",
            )
        return None

    def _check_card_index(self, sent: dict[str, set[int]], upto: int) -> BadRecord | None:
        """Each card index entry must point to a record that sent that card: feedback
        joins by it, so a repointed entry would attach feedback to the wrong record."""
        with self._read() as tx:
            rows = tx.rows(
                "SELECT card_uuid, seq FROM audit_card WHERE seq <= ? ORDER BY seq", (upto,)
            )
        indexed = {str(card) for card, _ in rows}
        for card_uuid, seq in rows:
            senders = sorted(sent.get(str(card_uuid), ()))
            if int(seq) not in senders:
                bad = senders[0] if senders else int(seq)
                return BadRecord(
                    bad,
                    f"record {bad}: the card index points card {card_uuid} at record {seq}, "
                    "which did not send it",
                )
        for card_uuid, seqs in sent.items():
            if card_uuid not in indexed:
                bad = min(seqs)
                return BadRecord(bad, f"record {bad}: a card it sent is not in the card index")
        return None


_QUERY_COLUMNS = "hook_instance, service_id, patient_id, status, model_id, model_version"


def _columns_disagree(
    rec: StoredAuditRecord, columns: tuple[Any, ...], sent: dict[str, set[int]]
) -> BadRecord | None:
    """The query columns must say what the hashed body says (else a query by patient,
    say, would silently miss or misattribute records). Collects the cards sent."""
    body = rec.body
    if rec.kind == "hook":
        model = body.get("model") or {}
        want: tuple[Any, ...] = (
            body.get("hookInstance"),
            body.get("service"),
            body.get("patient"),
            body.get("status"),
            model.get("id"),
            model.get("version"),
        )
        for card in body.get("cards") or []:
            if card.get("uuid"):
                sent.setdefault(card["uuid"], set()).add(rec.seq)
    elif rec.kind == "feedback":
        want = (
            body.get("hookInstance"),
            body.get("service"),
            body.get("patient"),
            body["feedback"].get("outcome"),
            None,
            None,
        )
    else:
        return None
    if want != columns:
        return BadRecord(
            rec.seq, f"record {rec.seq}: its query columns disagree with its hashed body"
        )
    return None


# ---------------------------------------------------------------- SQLite


def _sqlite_write_error(path: Path, exc: sqlite3.Error) -> AuditWriteError:
    kind = AuditUnavailable if sqlite_storage_failure(exc) else AuditWriteError
    return kind(f"audit record not written to {path}: {exc}")


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount


class SqliteAuditLog(ChainedAuditLog):
    """The audit chain in one SQLite file (WAL, synchronous=FULL: a committed record
    survives a crash or power loss)."""

    def __init__(
        self,
        path: Path,
        *,
        signer: AuditSigner | None = None,
        checkpoint_every: int = 100,
        clock: Callable[[], str] = _utc_now_text,
    ) -> None:
        super().__init__(signer=signer, checkpoint_every=checkpoint_every, clock=clock)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

        def create(tx: Tx) -> None:
            for statement in (*SCHEMA, *_SQLITE_APPEND_ONLY):
                tx.run(statement)

        self._transaction(create)

    @property
    def path(self) -> Path:
        return self._path

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self._path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def _transaction(self, work: Callable[[Tx], _T]) -> _T:
        try:
            db = self._db()
            # BEGIN IMMEDIATE takes the write lock before reading the chain's head, so
            # two writers (threads or processes) cannot both link to the same record.
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._forget_connection()
            raise _sqlite_write_error(self._path, exc) from exc
        try:
            result = work(_SqliteTx(db))
            db.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            self._rollback(db)
            raise _sqlite_write_error(self._path, exc) from exc
        except BaseException:
            self._rollback(db)
            raise

    def _rollback(self, db: sqlite3.Connection) -> None:
        # A COMMIT that failed on a full disk has already rolled back: an unconditional
        # ROLLBACK would raise "no transaction is active" and hide the real error.
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                # A connection that cannot even roll back is not reused.
                self._forget_connection()

    def _forget_connection(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            with self._lock:
                if db in self._all:
                    self._all.remove(db)
            with contextlib.suppress(sqlite3.Error):
                db.close()

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        try:
            yield _SqliteTx(self._db())
        except sqlite3.Error as exc:
            if sqlite_storage_failure(exc):
                raise AuditUnavailable(f"audit trail {self._path} unreadable: {exc}") from exc
            raise

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()


# ---------------------------------------------------------------- choosing a store


def open_audit_log(settings: Settings) -> ChainedAuditLog:
    """The audit log the settings name: PostgreSQL when a database URL is set, else
    SQLite under the data directory; signing checkpoints when a key is configured."""
    signer = (
        load_signer(settings.audit_signing_key_file) if settings.audit_signing_key_file else None
    )
    if signer is None:
        log.warning(
            "no audit signing key configured (TWIN_CDS_AUDIT_SIGNING_KEY_FILE): audit "
            "checkpoints are not signed"
        )
    url = settings.database_url
    if url:
        from cds_service.audit.store_pg import PostgresAuditLog

        return PostgresAuditLog(
            url, signer=signer, checkpoint_every=settings.audit_checkpoint_every
        )
    return SqliteAuditLog(
        settings.audit_db, signer=signer, checkpoint_every=settings.audit_checkpoint_every
    )


def verify_key_from(settings: Settings) -> Ed25519PublicKey | None:
    """The key that checks checkpoint signatures: the verify key, else the signing key's."""
    if settings.audit_verify_key_file:
        return load_verify_key(settings.audit_verify_key_file)
    if settings.audit_signing_key_file:
        return load_signer(settings.audit_signing_key_file).public_key
    return None


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
    "BadRecord",
    "ChainReport",
    "ChainedAuditLog",
    "FeedbackResult",
    "ModelUse",
    "RecordKind",
    "SqliteAuditLog",
    "StoredAuditRecord",
    "canonical_json",
    "explanation_for_audit",
    "generate_demo_signing_key",
    "key_id",
    "load_signer",
    "load_verify_key",
    "open_audit_log",
    "record_hash",
    "verify_key_from",
]
