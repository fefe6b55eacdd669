"""Card models refuse what CDS Hooks 2.0 forbids."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cds_service.http.cards import Card

SOURCE = {"label": "twin-cds"}
CREATE = {"type": "create", "description": "order", "resource": {"resourceType": "ServiceRequest"}}


@pytest.mark.parametrize(
    ("card", "error"),
    [
        ({"summary": "x" * 140, "indicator": "info", "source": SOURCE}, "at most 139"),
        ({"summary": "", "indicator": "info", "source": SOURCE}, "at least 1"),
        ({"summary": "s", "indicator": "urgent", "source": SOURCE}, "indicator"),
        ({"summary": "s", "indicator": "info"}, "source"),
        (
            {
                "summary": "s",
                "indicator": "info",
                "source": SOURCE,
                "suggestions": [{"label": "do", "actions": [CREATE]}],
            },
            "selectionBehavior",
        ),
        (
            {
                "summary": "s",
                "indicator": "info",
                "source": SOURCE,
                "selectionBehavior": "any",
                "suggestions": [
                    {"label": "do", "actions": [{"type": "delete", "description": "d"}]}
                ],
            },
            "resourceId",
        ),
        (
            {
                "summary": "s",
                "indicator": "info",
                "source": SOURCE,
                "selectionBehavior": "any",
                "suggestions": [
                    {"label": "do", "actions": [{"type": "create", "description": "d"}]}
                ],
            },
            "carries a resource",
        ),
        (
            {
                "summary": "s",
                "indicator": "info",
                "source": SOURCE,
                "links": [
                    {"label": "l", "url": "https://x", "type": "absolute", "appContext": "{}"}
                ],
            },
            "appContext",
        ),
        ({"summary": "s", "indicator": "info", "source": SOURCE, "colour": "red"}, "Extra inputs"),
    ],
)
def test_invalid_cards_are_refused(card: dict[str, Any], error: str) -> None:
    """Each spec invariant has a card that breaks it and is refused, naming the rule."""
    with pytest.raises(ValidationError, match=error):
        Card.model_validate(card)


def test_a_full_card_validates() -> None:
    """A card using every part the spec allows is accepted."""
    card = Card.model_validate(
        {
            "uuid": "c1",
            "summary": "s" * 139,
            "detail": "**d**",
            "indicator": "warning",
            "source": {"label": "twin-cds", "topic": {"code": "risk"}},
            "selectionBehavior": "at-most-one",
            "suggestions": [{"label": "do", "uuid": "s1", "actions": [CREATE]}],
            "overrideReasons": [{"code": "patient-declined"}],
            "links": [{"label": "app", "url": "https://x", "type": "smart", "appContext": "{}"}],
        }
    )
    assert card.summary == "s" * 139
