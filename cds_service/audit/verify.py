"""Verifying the audit chain: walk every record in order and name the first bad one
(a hash or link that does not match, a body changed after it was hashed, query columns
that disagree with the hashed body, a card part missing or changed, a head that does
not name the last record, a card index entry pointing at the wrong record, signed
checkpoints missing). The hashing and signatures are ``cds_service.audit.chain``'s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cds_service.audit.chain import (
    AuditSigner,
    BadRecord,
    ChainReport,
    StoredAuditRecord,
    _Verifier,
)
from cds_service.audit.parts import part_name
from cds_service.audit.schema import _COLUMNS, _QUERY_COLUMNS, Tx, _verifiable
from cds_service.audit.stored import part_refs


class VerifiableChain(ABC):
    """What the chain's verification needs of a log; ``ChainedAuditLog`` is one."""

    _signer: AuditSigner | None
    _checkpoint_every: int

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """A read-only view."""

    @abstractmethod
    def _parts(self, names: set[str]) -> dict[str, bytes]:
        """The stored parts of these names (missing ones are simply absent)."""

    def _public_key(self) -> Ed25519PublicKey | None:
        return self._signer.public_key if self._signer else None

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
