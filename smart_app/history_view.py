"""The recommendation history's JSON: this patient's cards in this EHR, with responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.audit.log import ChainedAuditLog
from smart_app.schema import ApiModel


class OverrideReason(ApiModel):
    code: str | None
    display: str | None


class FeedbackShown(ApiModel):
    outcome: str | None
    time: str | None
    override_reason: OverrideReason | None
    accepted_suggestions: list[str | None]


class CardShown(ApiModel):
    uuid: str | None
    summary: str | None
    indicator: str | None
    feedback: list[FeedbackShown]


class ModelRef(ApiModel):
    id: str | None
    version: str | None


class RecordShown(ApiModel):
    seq: int
    time: str
    service: str | None
    hook: str | None
    status: str | None
    model: ModelRef | None
    twin_version: int | None
    cards: list[CardShown]


class History(ApiModel):
    """``GET /app/api/history``: newest first."""

    records: list[RecordShown]


def _feedback_view(f: Mapping[str, Any]) -> FeedbackShown:
    reason = f.get("overrideReason") or {}
    coding = reason.get("reason") if isinstance(reason, dict) else None
    accepted = f.get("acceptedSuggestions") or []
    return FeedbackShown(
        outcome=f.get("outcome"),
        time=f.get("outcomeTimestamp"),
        override_reason=OverrideReason(code=coding.get("code"), display=coding.get("display"))
        if isinstance(coding, dict)
        else None,
        accepted_suggestions=[a.get("id") for a in accepted if isinstance(a, dict)],
    )


def history(audit: ChainedAuditLog, patient_id: str, scope: str | None, limit: int = 50) -> History:
    """This patient's recommendations in this EHR (tenant), newest first, with responses."""
    records = []
    for rec in reversed(audit.records(patient_id=patient_id)):
        body = rec.body
        client = body.get("client") or {}
        # Patient ids are unique only within one EHR: show only this EHR's records.
        if (client.get("tenant") or client.get("iss")) != scope:
            continue
        cards = [
            CardShown(
                uuid=c.get("uuid"),
                summary=c.get("summary"),
                indicator=c.get("indicator"),
                feedback=[_feedback_view(f) for f in audit.feedback_for(str(c.get("uuid")))],
            )
            for c in body.get("cards") or []
            if isinstance(c, dict)
        ]
        model = body.get("model")
        twin = body.get("twin") or {}
        records.append(
            RecordShown(
                seq=rec.seq,
                time=rec.recorded_at,
                service=body.get("service"),
                hook=body.get("hook"),
                status=body.get("status"),
                model=ModelRef(id=model.get("id"), version=model.get("version"))
                if isinstance(model, dict)
                else None,
                twin_version=twin.get("version"),
                cards=cards,
            )
        )
        if len(records) >= limit:
            break
    return History(records=records)
