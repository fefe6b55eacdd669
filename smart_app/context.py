"""The launch's context as the app's API sees it: what the session holds, typed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AppSession:
    """The launch's context; the token stays here, on the server."""

    session_id: str
    iss: str
    access_token: str
    patient: str
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    style: dict[str, str]
    user: str | None
    app_context: dict[str, Any] | None
    expires_at: float

    @classmethod
    def from_stored(cls, session_id: str, data: dict[str, Any]) -> AppSession:
        """From the session store's record (``smart_app.launch`` writes it)."""
        return cls(
            session_id=session_id,
            iss=data["iss"],
            access_token=data["access_token"],
            patient=data["patient"],
            encounter=data.get("encounter"),
            need_patient_banner=bool(data.get("need_patient_banner", True)),
            smart_style_url=data.get("smart_style_url"),
            style=data.get("style") or {},
            user=data.get("user"),
            app_context=data.get("app_context"),
            expires_at=float(data["expires_at"]),
        )
