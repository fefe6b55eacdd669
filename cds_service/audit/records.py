"""What the audit trail records, as types: a hook call (``AuditEntry``), the models it
used, an auditor's read, a clinician's app launch, the answer to feedback, and an
auditor's query. Independent of where the chain is stored (``cds_service.audit.log``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

from cds_service.audit.chain import RecordKind

AuditStatus = Literal["ok", "no-card", "data-unavailable", "bad-request", "error"]


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


def json_object(text: object) -> dict[str, Any]:
    value = orjson.loads(text) if isinstance(text, str | bytes) else text
    return value if isinstance(value, dict) else {}


def sanitised_feedback(entry: dict[str, Any]) -> dict[str, Any]:
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
