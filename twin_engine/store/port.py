"""Versioned twin store: the port (`TwinStore`); its adapter on SQLite or PostgreSQL is
`twin_engine.store.sql` (schema in `schema`, revisions in `migrations`).

Every save of a changed twin writes a new version (1, 2, 3, ... per patient) holding
the twin's canonical state JSON and its content hash; earlier versions stay readable,
so the state behind any past recommendation can be reconstructed with
`Twin.from_state(store.load(pid, version).twin_json)`.  The raw FHIR is not stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from twin_engine.errors import TwinNotFoundError
from twin_engine.twin import Twin


@dataclass(frozen=True, slots=True)
class TwinVersion:
    """One stored version.  `created` is True only on the value returned by the
    `save` call that wrote it (False when that save found identical content)."""

    patient_id: str
    version: int
    content_hash: str
    created_at: datetime
    as_of: str | None = None
    created: bool = False


@dataclass(frozen=True, slots=True)
class StoredTwin:
    version: TwinVersion
    twin_json: dict[str, Any]

    def twin(self) -> Twin:
        return Twin.from_state(self.twin_json)


class TwinStore(Protocol):
    """Port: where twin versions live (SQLite by default, PostgreSQL when scaled out)."""

    def save(
        self, twin: Twin, *, as_of: str | None = None, key: str | None = None
    ) -> TwinVersion: ...

    def load(self, patient_id: str, version: int | None = None) -> StoredTwin: ...

    def versions(self, patient_id: str) -> list[TwinVersion]: ...

    def schema_check(self) -> dict[str, str]:
        """Readiness: raises unless the database answers at this release's revision."""
        ...

    def close(self) -> None: ...


def store_key(scope: str | None, patient_id: str) -> str | None:
    """The key a twin is saved under: ``"<tenant or issuer>|<patient id>"``, because a
    patient id is unique only within one EHR; None (the patient id) without a scope."""
    return f"{scope}|{patient_id}" if scope else None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def stored_twin(patient_id: str, version: int | None, row: Any) -> StoredTwin:
    """The row ``load_query`` found, or TwinNotFoundError naming what was asked for."""
    if row is None:
        which = "any version" if version is None else f"version {version}"
        raise TwinNotFoundError(f"no stored twin of Patient/{patient_id} ({which})")
    return StoredTwin(_version(patient_id, row[:4]), json.loads(row[4]))


def state_json(twin: Twin) -> str:
    """The canonical state text a version stores (``Twin.from_state`` reads it back)."""
    return twin.state_text()


def _version(patient_id: str, row: tuple[Any, ...]) -> TwinVersion:
    return TwinVersion(
        patient_id=patient_id,
        version=int(row[0]),
        content_hash=str(row[1]),
        created_at=datetime.fromisoformat(row[2]),
        as_of=row[3],
    )
