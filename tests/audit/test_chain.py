"""The chain: every kind of tampering is caught at the first bad record, in both stores."""

# S608: the SQL built here is the attacker's, from constants and hashes of our own.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cds_service.audit.log import (
    AuditConfigError,
    AuditorRead,
    AuditSigner,
    canonical_json,
    record_hash,
)
from tests.audit.conftest import entry
from tests.audit.stores import StoreSpec

N = 10


def _filled(store: StoreSpec, **kwargs: Any) -> Any:
    log = store.open(**kwargs)
    for n in range(1, N + 1):
        log.record(entry(n, patient=f"p{n % 3}"))
    return log


def _shift(store: StoreSpec, from_seq: int, by: int) -> list[str]:
    """SQL that renumbers records >= from_seq by ``by`` (in two steps: seq is unique)."""
    return [
        f"UPDATE audit_chain SET seq = -seq WHERE seq >= {from_seq}",
        f"UPDATE audit_chain SET seq = -seq + ({by}) WHERE seq < 0",
    ]


def _row(store: StoreSpec, seq: int) -> tuple[Any, ...]:
    (row,) = store.rows(
        f"SELECT seq, kind, recorded_at, body, prev_hash, record_hash FROM audit_chain "
        f"WHERE seq = {seq}"
    )
    return row


def _forged_insert(store: StoreSpec) -> list[str]:
    """A record forged at seq 5 with a correct hash over record 4, the rest moved up."""
    prev = _row(store, 4)[5]
    body = {"hookInstance": "forged", "patient": "p9", "service": "ascvd-risk", "status": "ok"}
    at = "2026-01-01T00:00:00.000000+00:00"
    digest = record_hash(prev, at, body, seq=5, kind="hook")
    text = canonical_json(body).decode()
    return [
        *_shift(store, 5, 1),
        "INSERT INTO audit_chain (seq, kind, recorded_at, hook_instance, service_id, "
        "patient_id, status, body, prev_hash, record_hash) VALUES "
        f"(5, 'hook', '{at}', 'forged', 'ascvd-risk', 'p9', 'ok', '{text}', '{prev}', '{digest}')",
        f"UPDATE audit_head SET seq = {N + 1}",
    ]


def _swap(store: StoreSpec) -> list[str]:
    return [
        "UPDATE audit_chain SET seq = -3 WHERE seq = 7",
        "UPDATE audit_chain SET seq = 7 WHERE seq = 3",
        "UPDATE audit_chain SET seq = 3 WHERE seq = -3",
    ]


def _delete_renumber(store: StoreSpec) -> list[str]:
    return [
        "DELETE FROM audit_chain WHERE seq = 5",
        *_shift(store, 6, -1),
        f"UPDATE audit_head SET seq = {N - 1}",
    ]


def _append_bogus(store: StoreSpec) -> list[str]:
    return [
        "INSERT INTO audit_chain (seq, kind, recorded_at, body, prev_hash, record_hash) VALUES "
        f"({N + 1}, 'hook', '2026-01-01', '{{}}', '{'0' * 64}', '{'1' * 64}')",
        f"UPDATE audit_head SET seq = {N + 1}, record_hash = '{'1' * 64}'",
    ]


TAMPERING: list[tuple[str, Callable[[StoreSpec], list[str]], int, str]] = [
    (
        "modified body",
        lambda s: ["UPDATE audit_chain SET body = replace(body, '0.123', '0.023') WHERE seq = 4"],
        4,
        "was modified",
    ),
    (
        "modified query column",
        lambda s: ["UPDATE audit_chain SET patient_id = 'someone-else' WHERE seq = 6"],
        6,
        "query columns disagree",
    ),
    ("deleted", lambda s: ["DELETE FROM audit_chain WHERE seq = 5"], 5, "is missing"),
    ("deleted and renumbered", _delete_renumber, 5, "deleted before it"),
    ("inserted with a forged hash", _forged_insert, 5, "record 5 was inserted"),
    ("appended with a bogus hash", _append_bogus, N + 1, "does not link"),
    ("reordered", _swap, 3, "does not link"),
    ("tail truncated", lambda s: [f"DELETE FROM audit_chain WHERE seq > {N - 2}"], N - 1, "head"),
    (
        "card index repointed",
        lambda s: ["UPDATE audit_card SET seq = 2 WHERE card_uuid = 'card-3'"],
        3,
        "card index",
    ),
]


@pytest.mark.parametrize(
    ("how", "sql", "first_bad", "reason"), TAMPERING, ids=[t[0] for t in TAMPERING]
)
def test_verify_names_the_first_bad_record(
    store: StoreSpec,
    how: str,
    sql: Callable[[StoreSpec], list[str]],
    first_bad: int,
    reason: str,
) -> None:
    """Each kind of tampering is reported at the first bad record with its reason."""
    log = _filled(store)
    assert log.verify().ok
    store.raw_sql(*sql(store))
    report = log.verify()
    assert report.first_bad is not None, how
    assert (report.first_bad.seq, reason in report.first_bad.reason) == (first_bad, True), (
        report.first_bad
    )
    assert log.verify_chain() == first_bad
    log.close()


def _recompute_from(store: StoreSpec, start: int) -> list[str]:
    """The attacker's rewrite: every hash from ``start`` on recomputed, head updated."""
    rows = store.rows(
        "SELECT seq, kind, recorded_at, body, prev_hash, record_hash FROM audit_chain ORDER BY seq"
    )
    out: list[str] = []
    prev = rows[start - 2][5] if start > 1 else "0" * 64
    for seq, kind, at, text, _, _ in rows[start - 1 :]:
        body = json.loads(text)
        digest = record_hash(prev, at, body, seq=seq, kind=kind)
        out.append(
            f"UPDATE audit_chain SET prev_hash = '{prev}', record_hash = '{digest}' "
            f"WHERE seq = {seq}"
        )
        prev = digest
    out.append(f"UPDATE audit_head SET record_hash = '{prev}'")
    return out


def test_a_recomputed_chain_is_caught_by_the_signed_checkpoint(
    store: StoreSpec, signer: AuditSigner
) -> None:
    """Changing a record and recomputing every later hash breaks the next signed checkpoint."""
    log = _filled(store, signer=signer, checkpoint_every=4)
    report = log.verify()
    assert (report.ok, report.checkpoints, report.signatures_checked) == (True, 2, 2)
    assert [r.seq for r in log.records(kind="checkpoint")] == [5, 10]
    store.raw_sql("UPDATE audit_chain SET body = replace(body, 'p1', 'p2') WHERE seq = 2")
    store.raw_sql(*_recompute_from(store, 2))
    bad = log.verify().first_bad
    assert bad is not None
    assert (bad.seq, "does not sign the chain" in bad.reason) == (5, True)
    # Fixing the checkpoint's hash too needs the key: the old signature no longer verifies.
    new_hash = _row(store, 4)[5]
    store.raw_sql(
        "UPDATE audit_chain SET body = replace(body, "
        f"'{json.loads(_row(store, 5)[3])['throughHash']}', '{new_hash}') WHERE seq = 5",
    )
    store.raw_sql(*_recompute_from(store, 5))
    bad = log.verify().first_bad
    assert bad is not None
    assert (bad.seq, "signature does not verify" in bad.reason) == (5, True)
    log.close()


def test_a_checkpoint_signed_by_another_key_is_refused(
    store: StoreSpec, signer: AuditSigner
) -> None:
    """A checkpoint written with a key that is not the configured one fails verification."""
    rogue = AuditSigner(Ed25519PrivateKey.generate())
    log = _filled(store, signer=rogue, checkpoint_every=4)
    bad = log.verify(signer.public_key).first_bad
    assert bad is not None
    assert (bad.seq, "not ours" in bad.reason) == (5, True)
    log.close()


def test_without_a_key_there_are_no_checkpoints_and_verify_says_so(store: StoreSpec) -> None:
    """No signing key: no checkpoint is invented, on-demand signing refuses, verify warns."""
    log = _filled(store, checkpoint_every=4)
    assert log.records(kind="checkpoint") == []
    with pytest.raises(AuditConfigError, match="no audit signing key"):
        log.checkpoint()
    report = log.verify()
    assert report.ok
    assert any("no signed checkpoints" in w for w in report.warnings)
    log.close()


def test_on_demand_checkpoint_signs_the_head(store: StoreSpec, signer: AuditSigner) -> None:
    """checkpoint() signs the chain as it is; verify then reports it signed through there."""
    log = _filled(store, signer=signer, checkpoint_every=0)
    rec = log.checkpoint()
    assert (rec.seq, rec.body["throughSeq"]) == (N + 1, N)
    report = log.verify()
    assert (report.ok, report.signed_through, report.warnings) == (True, N, ())
    log.close()


def test_the_chain_is_append_only_in_the_store(store: StoreSpec) -> None:
    """UPDATE and DELETE on the chain are refused by the store itself."""
    import sqlite3

    log = _filled(store)
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    if store.kind == "postgres":
        import psycopg

        errors = (psycopg.Error,)
    for statement in ("UPDATE audit_chain SET status = 'x'", "DELETE FROM audit_chain"):
        with pytest.raises(errors, match="append-only"):
            _run_with_triggers(store, statement)
    assert log.verify().ok
    log.close()


def _run_with_triggers(store: StoreSpec, statement: str) -> None:
    if store.kind == "sqlite":
        import sqlite3

        assert store.sqlite_path is not None
        db = sqlite3.connect(store.sqlite_path, isolation_level=None)
        try:
            db.execute(statement)
        finally:
            db.close()
        return
    import psycopg

    assert store.pg_url is not None
    with psycopg.connect(store.pg_url, autocommit=True) as conn:
        conn.execute(statement)


def test_feedback_joins_the_chain_once_without_free_text(store: StoreSpec) -> None:
    """Feedback is a chain record joined by card uuid; a duplicate is not appended again."""
    log = _filled(store)
    feedback = {
        "card": "card-3",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-27T10:00:00Z",
        "overrideReason": {
            "reason": {"system": "http://example.org/reasons", "code": "patient-declined"},
            "userComment": "Mrs Smith said her sister had side effects",
        },
    }
    first = log.record_feedback("ascvd-risk", [feedback], "https://ehr.example")
    again = log.record_feedback("ascvd-risk", [feedback], "https://ehr.example")
    unknown = log.record_feedback("ascvd-risk", [{**feedback, "card": "nope"}], None)
    assert (first.stored, again.duplicates, unknown.unknown_cards) == (1, 1, ("nope",))
    (rec,) = log.records(kind="feedback")
    assert rec.seq == N + 1
    assert rec.body == {
        "service": "ascvd-risk",
        "card": "card-3",
        "hookRecord": 3,
        "hookInstance": "hook-3",
        "patient": "p0",
        # The hook's tenant, so that tenant's auditor reads the feedback on its cards.
        "client": {"iss": "https://ehr.example", "tenant": "hospital-a"},
        "feedback": {
            "card": "card-3",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-27T10:00:00Z",
            "overrideReason": {
                "reason": {"system": "http://example.org/reasons", "code": "patient-declined"},
                "userCommentGiven": True,
            },
        },
    }
    assert log.feedback_for("card-3") == [rec.body["feedback"]]
    assert b"sister" not in store.dump_bytes()
    assert log.verify().ok
    log.close()


def test_queries_filter_by_patient_model_time_status_and_outcome(store: StoreSpec) -> None:
    """The auditor's questions: by patient, service, model version, time, status, outcome."""
    from cds_service.audit.log import AuditQuery

    log = _filled(store)
    log.record(entry(11, patient="p1", model=None, status="error", error="boom"))
    log.record_feedback(
        "ascvd-risk",
        [{"card": "card-4", "outcome": "accepted", "outcomeTimestamp": "2026-11-27T10:00:00Z"}],
        "https://ehr.example",  # the client the card was sent to
    )
    everything = log.records(kind=None)
    middle = everything[4].recorded_at

    def seqs(**q: Any) -> list[int]:
        return [r.seq for r in log.query(AuditQuery(**q))]

    from datetime import datetime

    assert seqs(patient_id="p1") == [1, 4, 7, 10, 11]
    assert seqs(model_id="pce", model_version="1.0.0", limit=3) == [1, 2, 3]
    assert seqs(model_version="9.9") == []
    assert seqs(status="error") == [11]
    assert seqs(outcome="accepted") == [4]
    assert seqs(kind="feedback") == [12]
    assert seqs(since=datetime.fromisoformat(middle), limit=2) == [5, 6]
    assert seqs(until=datetime.fromisoformat(middle)) == [1, 2, 3, 4]
    assert seqs(after_seq=9) == [10, 11]
    log.record_auditor_read(
        AuditorRead("https://idp.example", "auditor-1", "j1", "query", {"patient_id": "p1"}, 5)
    )
    assert seqs(kind="auditor-read") == [13]
    log.close()


def test_dropped_checkpoints_are_caught_when_a_verify_key_is_given(store: StoreSpec) -> None:
    """Review finding: a chain rebuilt without its checkpoints verified as ok."""
    key = Ed25519PrivateKey.generate()
    unsigned = store.open(checkpoint_every=5)  # written without a signer: no checkpoints
    for n in range(1, 3 * 5 + 1):
        unsigned.record(entry(n))
    report = unsigned.verify(key.public_key())
    assert report.first_bad is not None
    assert "checkpoint" in report.first_bad.reason
    assert unsigned.verify().first_bad is None  # without a key: only a warning, as before


def test_a_tenant_query_returns_that_tenants_records_alone(store: StoreSpec) -> None:
    """AuditQuery(tenant=...) narrows to hook, feedback and app-access records of that
    tenant; auditor reads and other tenants' records are not in it (both stores' SQL)."""
    from cds_service.audit.log import AppAccess, AuditQuery

    log = store.open()
    log.record(entry(1, client_tenant="hospital-a", client_iss="https://ehr.example"))
    log.record(entry(2, client_tenant="hospital-b", client_iss="https://ehr.example"))
    log.record_app_access(
        AppAccess("https://ehr/fhir", "app", None, "p1", None, "hospital-a", "ehr", None)
    )
    log.record_auditor_read(AuditorRead("https://idp", "ann", "j", "query", {}, 0))
    mine = log.query(AuditQuery(kind=None, tenant="hospital-a"))
    assert [(r.seq, r.kind) for r in mine] == [(1, "hook"), (3, "app-access")]
    assert [r.seq for r in log.query(AuditQuery(kind=None, tenant="hospital-b"))] == [2]
    assert len(log.query(AuditQuery(kind=None))) == 4
