"""The base of the app API's answers, and the session's.

Each panel's answer is a pydantic model next to the code that builds it (``twin_view``,
``risk_view``, ``dose_view``, ``history_view``), so the OpenAPI document describes every
``/app/api`` answer and the fuzz test checks answers against it. Field names and order
are the JSON the page reads (smart_app/static/app.js).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    """An answer of the app's API: exactly these fields, so a builder that forgets or
    adds one fails in the tests instead of sending the page something else."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionInfo(ApiModel):
    """The launch context, without the token."""

    patient: str
    encounter: str | None
    user: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    #: The EHR's style, checked on the server (smart_app.style); the page applies it.
    style: dict[str, str]
    app_context: dict[str, Any] | None
    expires_at: str
