"""The chain's cryptography: canonical form, record hashes, signed checkpoints, verify.

Store-independent and free of I/O beyond reading key files: ``audit.log`` (on the
stores of ``audit.sql``) appends records, this module says what a record's hash is and
checks a chain of stored records step by step (``audit.verify`` walks it).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from cds_service.audit.stored import chain_form
from cds_service.errors import ServiceError
from twin_engine.storage import StorageUnavailable

log = logging.getLogger("twin_cds.audit")

RecordKind = Literal[
    "hook", "feedback", "auditor-read", "app-access", "population-run", "checkpoint"
]
RECORD_KINDS: tuple[RecordKind, ...] = (
    "hook",
    "feedback",
    "auditor-read",
    "app-access",
    "population-run",
    "checkpoint",
)

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class StoredAuditRecord:
    seq: int
    recorded_at: str
    body: dict[str, Any]
    prev_hash: str
    record_hash: str
    kind: RecordKind = "hook"
    #: Why the stored body cannot be read ("body is not JSON"); its ``body`` is then
    #: empty. The writer stores JSON objects only, so such a record was changed after it
    #: was hashed: every reader reports it as damaged rather than failing on it.
    damage: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "kind": self.kind,
            "recordedAt": self.recorded_at,
            "body": None if self.damage else self.body,
            "prevHash": self.prev_hash,
            "recordHash": self.record_hash,
        }
        if self.damage:
            out["damaged"] = self.damaged()
        return out

    def damaged(self) -> dict[str, Any]:
        """What a reader reports of a damaged record: its seq, why, and the chain there."""
        return {"seq": self.seq, "reason": self.damage, "chain": CHAIN_BROKEN}

    def check(self, previous: StoredAuditRecord | None) -> dict[str, bool]:
        """Does the record hash to its recordHash, and link to the record before it?"""
        hashes = self.damage is None and self.record_hash == record_hash(
            self.prev_hash, self.recorded_at, self.body, seq=self.seq, kind=self.kind
        )
        links = self.prev_hash == (previous.record_hash if previous else GENESIS)
        return {"hashMatches": hashes, "linksToPrevious": links}


#: The chain's status at a damaged record, as every reader reports it.
CHAIN_BROKEN = (
    "broken here: the stored body cannot hash to the record's recordHash "
    "(`twin-cds audit verify` reports it as tampering)"
)


class AuditError(ServiceError):
    """The audit trail cannot do what was asked.

    AuditError
     ├── AuditConfigError   settings name a key or store that cannot be used
     └── AuditWriteError    a record could not be appended (nothing was written)
          └── AuditUnavailable   because the storage failed (503 at the HTTP edge)
    """


class AuditConfigError(AuditError):
    """A signing key, verify key or database URL in the settings cannot be used."""


class AuditWriteError(AuditError):
    """A record could not be appended; the transaction was rolled back."""


class AuditUnavailable(AuditWriteError, StorageUnavailable):
    """The audit store could not be reached or written (database down, disk full,
    read-only): nothing was written, and a later retry may succeed."""


# ---------------------------------------------------------------- hashing, signing


def canonical_json(value: Any) -> bytes:
    """The one byte form everything is hashed and signed over: sorted keys, no spaces."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def record_hash(
    prev_hash: str, recorded_at: str, body: dict[str, Any], *, seq: int, kind: RecordKind
) -> str:
    """sha256 over the previous hash and the record's canonical JSON envelope.

    The seq and kind are inside the hash, so renumbering records (to hide a deletion
    or an insertion) changes every renumbered hash.
    """
    # A hook record in a stored format (card parts, tables) is hashed in its stored form,
    # whether the caller holds that form (verify) or the record as read (a reader of one).
    return text_hash(prev_hash, recorded_at, canonical_json(chain_form(body)), seq=seq, kind=kind)


def text_hash(
    prev_hash: str, recorded_at: str, chained: bytes, *, seq: int, kind: RecordKind
) -> str:
    """``record_hash`` given ``chained``, the canonical JSON of the body's chain form: the
    writer has those bytes already (they are what it stores), and the envelope takes them
    as they are (orjson writes a ``Fragment`` verbatim) rather than dumping the body again."""
    envelope = {
        "seq": seq,
        "kind": kind,
        "recordedAt": recorded_at,
        "body": orjson.Fragment(chained),
    }
    return hashlib.sha256(prev_hash.encode() + canonical_json(envelope)).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _checkpoint_payload(through_seq: int, through_hash: str, kid: str, signed_at: str) -> bytes:
    return canonical_json(
        {
            "throughSeq": through_seq,
            "throughHash": through_hash,
            "keyId": kid,
            "signedAt": signed_at,
        }
    )


@dataclass(frozen=True, slots=True)
class AuditSigner:
    """Signs checkpoints with the operator's Ed25519 key."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign_checkpoint(
        self, through_seq: int, through_hash: str, signed_at: str
    ) -> dict[str, Any]:
        kid = key_id(self.public_key)
        payload = _checkpoint_payload(through_seq, through_hash, kid, signed_at)
        return {
            "throughSeq": through_seq,
            "throughHash": through_hash,
            "keyId": kid,
            "signedAt": signed_at,
            "algorithm": "Ed25519",
            "signature": _b64(self.private_key.sign(payload)),
        }


def load_signer(path: Path) -> AuditSigner:
    """The Ed25519 private key in a PEM file (PKCS#8, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditConfigError(f"audit signing key {path} cannot be read: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditConfigError(f"audit signing key {path} is not an Ed25519 key")
    return AuditSigner(key)


def load_verify_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM); a private key file is accepted and its public half used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditConfigError(f"audit verify key {path} cannot be read: {exc}") from exc
    if b"PRIVATE KEY" in data:
        return load_signer(path).public_key
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise AuditConfigError(f"audit verify key {path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditConfigError(f"audit verify key {path} is not an Ed25519 key")
    return key


def generate_demo_signing_key(data_dir: Path) -> Path:
    """Make (once) an Ed25519 key in the data directory, for the demo and tests only.

    Production keys are the operator's; this function logs loudly that it made one.
    """
    path = data_dir / "audit-signing-key.pem"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)
        log.warning("generated a DEMO audit signing key at %s; not for production", path)
    return path


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class BadRecord:
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What ``verify`` found: the first bad record (or none) and what was checked."""

    records: int
    last_seq: int
    checkpoints: int
    signatures_checked: int
    signed_through: int
    first_bad: BadRecord | None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "lastSeq": self.last_seq,
            "checkpoints": self.checkpoints,
            "signaturesChecked": self.signatures_checked,
            "signedThroughSeq": self.signed_through,
            "firstBad": (
                {"seq": self.first_bad.seq, "reason": self.first_bad.reason}
                if self.first_bad
                else None
            ),
            "warnings": list(self.warnings),
        }


@dataclass
class _Verifier:
    """Walks the chain once, in seq order, keeping only the last two hashes."""

    verify_key: Ed25519PublicKey | None
    prev_seq: int = 0
    prev_hash: str = GENESIS
    prev_prev_hash: str = GENESIS
    count: int = 0
    checkpoints: int = 0
    checked: int = 0
    signed_through: int = 0
    last_checkpoint: int = 0
    unchecked: int = 0
    warnings: list[str] = field(default_factory=list)

    def step(self, rec: StoredAuditRecord) -> BadRecord | None:
        expected = self.prev_seq + 1
        recomputed = record_hash(
            rec.prev_hash, rec.recorded_at, rec.body, seq=rec.seq, kind=rec.kind
        )
        if rec.seq != expected:
            return BadRecord(
                expected,
                f"record {expected} is missing: the chain jumps from {self.prev_seq} to {rec.seq}",
            )
        if rec.prev_hash != self.prev_hash:
            if rec.prev_hash == self.prev_prev_hash and self.prev_seq > 0:
                return BadRecord(
                    self.prev_seq,
                    f"record {self.prev_seq} was inserted: record {rec.seq} links past it",
                )
            for moved in (rec.seq + 1, rec.seq - 1):
                if moved > 0 and (
                    record_hash(rec.prev_hash, rec.recorded_at, rec.body, seq=moved, kind=rec.kind)
                    == rec.record_hash
                ):
                    how = "deleted before it" if moved > rec.seq else "inserted before it"
                    return BadRecord(
                        rec.seq,
                        f"record {rec.seq} was written as seq {moved}: records were "
                        f"{how} and the rest renumbered",
                    )
            return BadRecord(
                rec.seq,
                f"record {rec.seq} does not link to record {self.prev_seq}: records were "
                "inserted, deleted or reordered here",
            )
        if recomputed != rec.record_hash:
            return BadRecord(
                rec.seq, f"record {rec.seq} was modified: its content does not match its hash"
            )
        if rec.kind == "checkpoint":
            bad = self._checkpoint(rec)
            if bad is not None:
                return bad
        self.count += 1
        self.prev_seq = rec.seq
        self.prev_prev_hash, self.prev_hash = self.prev_hash, rec.record_hash
        return None

    def _checkpoint(self, rec: StoredAuditRecord) -> BadRecord | None:
        self.checkpoints += 1
        b = rec.body
        if b.get("throughSeq") != self.prev_seq or b.get("throughHash") != self.prev_hash:
            return BadRecord(
                rec.seq, f"checkpoint {rec.seq} does not sign the chain as it is before it"
            )
        if self.verify_key is None:
            self.unchecked += 1
            return None
        if b.get("keyId") != key_id(self.verify_key):
            return BadRecord(
                rec.seq, f"checkpoint {rec.seq} is signed by key {b.get('keyId')}, not ours"
            )
        payload = _checkpoint_payload(
            int(b["throughSeq"]), str(b["throughHash"]), str(b["keyId"]), str(b["signedAt"])
        )
        try:
            self.verify_key.verify(_unb64(str(b.get("signature", ""))), payload)
        except (InvalidSignature, ValueError):
            return BadRecord(rec.seq, f"checkpoint {rec.seq}: the signature does not verify")
        self.checked += 1
        self.signed_through = self.prev_seq
        self.last_checkpoint = rec.seq
        return None
