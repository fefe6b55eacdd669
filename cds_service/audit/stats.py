"""Follow-through statistics: what clinicians did with the cards, from the audit chain.

The unit is one card sent (a card in a ``hook`` record). Its response is the first
``feedback`` record on it in chain order (the decision taken when the card was shown):
``accepted``, ``overridden`` (counted by coded reason; ``no-reason`` when none was
coded), or, without feedback, ``no response``. A recent card may still get feedback:
read the last weeks' no-response rate with that in mind.

Cards are grouped by service, model version (the record's primary model,
``id@version``), card kind, tenant (the CDS client's; ``none`` without one) and month
(``YYYY-MM`` of the hook record, UTC).

Card kind is read from the card itself (cards carry no kind field):

- ``order-suggestion``: a suggestion creating an order (a missing laboratory input);
- ``regimen-change``: a suggestion updating the drafted order (dosing off target);
- ``not-computed``: no number, and why (missing or stale data, a dosing problem);
- ``result``: a computed result without a suggestion.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from cds_service.audit.chain import StoredAuditRecord

Dimension = Literal["service", "model", "card", "tenant", "month"]
DIMENSIONS: tuple[Dimension, ...] = ("service", "model", "card", "tenant", "month")


class _Readable(Protocol):
    def query(self, q: Any) -> list[StoredAuditRecord]: ...


def card_kind(card: Mapping[str, Any]) -> str:
    """One of order-suggestion, regimen-change, not-computed, result (see the module doc)."""
    actions = [
        a.get("type")
        for s in card.get("suggestions") or []
        for a in s.get("actions") or []
        if isinstance(a, dict)
    ]
    if "create" in actions:
        return "order-suggestion"
    if "update" in actions:
        return "regimen-change"
    summary = str(card.get("summary", ""))
    if " not computed" in summary or " not predicted" in summary:
        return "not-computed"
    return "result"


@dataclass(slots=True)
class Tally:
    """Counts for one group of cards."""

    cards: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def no_response(self) -> int:
        return self.cards - self.accepted - self.overridden

    def add(self, response: Mapping[str, Any] | None) -> None:
        self.cards += 1
        if response is None:
            return
        if response.get("outcome") == "accepted":
            self.accepted += 1
        elif response.get("outcome") == "overridden":
            self.overridden += 1
            self.override_reasons[_reason_code(response)] += 1

    def to_json(self) -> dict[str, Any]:
        def rate(n: int) -> float | None:
            return round(n / self.cards, 6) if self.cards else None

        return {
            "cards": self.cards,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "noResponse": self.no_response,
            "acceptedRate": rate(self.accepted),
            "overriddenRate": rate(self.overridden),
            "noResponseRate": rate(self.no_response),
            "overrideReasons": dict(sorted(self.override_reasons.items())),
        }


def _reason_code(feedback: Mapping[str, Any]) -> str:
    reason = feedback.get("overrideReason")
    coding = reason.get("reason") if isinstance(reason, dict) else None
    code = coding.get("code") if isinstance(coding, dict) else None
    return str(code) if code else "no-reason"


@dataclass(frozen=True, slots=True)
class FollowThrough:
    since: datetime | None
    tenant: str | None
    total: Tally
    groups: dict[Dimension, dict[str, Tally]]
    #: Records counted in none of the tallies: their stored body cannot be read.
    damaged: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "tenant": self.tenant,
            "total": self.total.to_json(),
            "groups": {
                dim: [{"key": key, **t.to_json()} for key, t in sorted(by.items())]
                for dim, by in self.groups.items()
            },
            "damaged": list(self.damaged),
        }


def _keys(hook: StoredAuditRecord, card: Mapping[str, Any]) -> dict[Dimension, str]:
    body = hook.body
    model = body.get("model") or {}
    client = body.get("client") or {}
    return {
        "service": str(body.get("service")),
        "model": f"{model['id']}@{model['version']}" if model else "none",
        "card": card_kind(card),
        "tenant": str(client.get("tenant") or "none"),
        "month": hook.recorded_at[:7],
    }


def tally(
    hooks: Iterable[StoredAuditRecord], feedback: Iterable[StoredAuditRecord]
) -> FollowThrough:
    """Count the cards of ``hooks`` and their first feedback (from ``feedback``)."""
    first: dict[str, Mapping[str, Any]] = {}
    for rec in feedback:
        entry = rec.body.get("feedback") or {}
        card = entry.get("card")
        if isinstance(card, str) and card not in first:
            first[card] = entry
    total = Tally()
    groups: dict[Dimension, dict[str, Tally]] = {d: {} for d in DIMENSIONS}
    for hook in hooks:
        for card in hook.body.get("cards") or []:
            response = first.get(str(card.get("uuid")))
            total.add(response)
            for dim, key in _keys(hook, card).items():
                groups[dim].setdefault(key, Tally()).add(response)
    return FollowThrough(None, None, total, groups)


def follow_through(
    log: _Readable, *, since: datetime | None = None, tenant: str | None = None
) -> FollowThrough:
    """The statistics of the cards sent since ``since`` (all when None), for one tenant
    (all when None: the operator's view; an auditor's is always bound to its tenant)."""
    from cds_service.audit.log import AuditQuery

    hooks = log.query(AuditQuery(kind="hook", since=since, tenant=tenant, limit=0))
    # Feedback follows its card, so feedback before ``since`` cannot be on these cards.
    feedback = log.query(AuditQuery(kind="feedback", since=since, tenant=tenant, limit=0))
    result = tally(hooks, feedback)
    damaged = tuple(r.damaged() for r in sorted([*hooks, *feedback], key=_seq) if r.damage)
    return FollowThrough(since, tenant, result.total, result.groups, damaged)


def _seq(rec: StoredAuditRecord) -> int:
    return rec.seq


def stats_table(stats: FollowThrough, *, by: Dimension = "service") -> str:
    """A plain-text table of one grouping, for the terminal."""
    header: tuple[str, ...] = (by, "cards", "accepted", "overridden", "no response", "reasons")
    rows = [header]
    for key, t in [*sorted(stats.groups[by].items()), ("(all)", stats.total)]:
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(t.override_reasons.items()))
        rows.append(
            (
                key,
                str(t.cards),
                _count_pct(t.accepted, t.cards),
                _count_pct(t.overridden, t.cards),
                _count_pct(t.no_response, t.cards),
                reasons or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        + [f"DAMAGED: record {d['seq']}: {d['reason']}; not counted" for d in stats.damaged]
    )


def _count_pct(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.1f}%)" if total else "0"
