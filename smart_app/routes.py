"""The clinician app's routes.

For now the app is only its launch entry point, so the link on every card lands on
a page that says what the card came from. SMART App Launch (EHR launch with PKCE,
the twin's timelines and the what-if simulator) comes with the SMART-app work; no
patient data is served here until that launch, and its authorization, exist.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(prefix="/app")


@router.get("/launch", response_class=HTMLResponse)
async def launch(iss: str | None = None, launch: str | None = None) -> HTMLResponse:
    """The SMART launch URL the cards link to."""
    detail = f"<p>Launch requested by <code>{escape(iss)}</code>.</p>" if iss else ""
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>twin-cds</title>"
        "<h1>twin-cds</h1>"
        f"{detail}"
        "<p>The twin viewer is not available in this version: it needs SMART App Launch "
        "authorization, which is not yet implemented. The card you came from carries "
        "the patient's inputs, their dates and the model's explanation.</p></html>"
    )
