"""CDS Hooks 2.0 cards as pydantic models that hold the spec's invariants.

The models are the last check before a card leaves: a summary of 140 characters
or more, a suggestion without ``selectionBehavior``, a delete without
``resourceId`` or an ``appContext`` on a non-SMART link cannot be built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Indicator = Literal["info", "warning", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Coding(_Strict):
    code: str
    system: str | None = None
    display: str | None = None


class Source(_Strict):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Strict):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: list[str] | None = None

    @model_validator(mode="after")
    def _payload_fits_type(self) -> Action:
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action names resourceId")
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"a {self.type} action carries a resource")
        return self


class Suggestion(_Strict):
    label: str = Field(min_length=1)
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(_Strict):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None

    @model_validator(mode="after")
    def _app_context_only_on_smart(self) -> Link:
        if self.appContext is not None and self.type != "smart":
            raise ValueError("appContext is only allowed on smart links")
        return self


class Card(_Strict):
    uuid: str | None = None
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _suggestions_need_selection_behavior(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("a card with suggestions states selectionBehavior")
        return self


class CdsResponse(_Strict):
    cards: list[Card] = Field(default_factory=list)
    systemActions: list[Action] | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
