"""The CDS Hooks 2.0 request envelope, validated at the HTTP edge.

Prefetch stays a plain mapping: its values are FHIR resources or Bundles that the
twin engine validates entry by entry, so a bad entry costs that entry, not the call.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class FhirAuthorization(BaseModel):
    """CDS Hooks 2.0 §fhirAuthorization. The token is held in memory only."""

    model_config = ConfigDict(extra="allow", frozen=True)

    access_token: str = Field(min_length=1, repr=False)
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None

    def __repr__(self) -> str:
        # Never let the token reach a log line through repr().
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r})"


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    userId: str | None = None
    patientId: str = Field(min_length=1)
    encounterId: str | None = None


#: Context fields each hook requires (CDS Hooks 2.0 hook definitions, v1.0 of each hook).
REQUIRED_CONTEXT: dict[str, tuple[str, ...]] = {
    "patient-view": ("userId", "patientId"),
    "order-select": ("userId", "patientId", "selections", "draftOrders"),
    "order-sign": ("userId", "patientId", "draftOrders"),
    "encounter-discharge": ("userId", "patientId", "encounterId"),
}


class HookRequest(BaseModel):
    """A hook call as CDS Hooks 2.0 defines it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: HttpUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: HookContext
    prefetch: dict[str, Any] | None = None


class AcceptedSuggestion(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1)


class OverrideReasonCoding(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    code: str = Field(min_length=1)
    system: str | None = None
    display: str | None = None


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    reason: OverrideReasonCoding | None = None
    userComment: str | None = Field(default=None, max_length=2000)


class FeedbackEntry(BaseModel):
    """CDS Hooks 2.0 §Feedback: what the clinician did with one card."""

    model_config = ConfigDict(extra="allow", frozen=True)

    card: str = Field(min_length=1, max_length=200)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] = Field(default_factory=list)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str = Field(min_length=1, max_length=64)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    feedback: list[FeedbackEntry] = Field(min_length=1, max_length=100)


def missing_context(request: HookRequest) -> tuple[str, ...]:
    """The context fields this hook requires that the request does not carry."""
    context = request.context.model_dump()
    return tuple(
        name for name in REQUIRED_CONTEXT.get(request.hook, ()) if context.get(name) in (None, "")
    )


class ServiceDescription(BaseModel):
    """One service in the discovery answer (CDS Hooks 2.0, Discovery)."""

    model_config = ConfigDict(extra="forbid")

    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None


class Discovery(BaseModel):
    """``GET /cds-services``: the services this deployment offers."""

    model_config = ConfigDict(extra="forbid")

    services: list[ServiceDescription]
