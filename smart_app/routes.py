"""The clinician app inside the service: launch, its JSON API, the page and its assets.

``install`` adds them to the service's FastAPI app. Every ``/app`` answer carries a
strict Content-Security-Policy (scripts, styles and data from our own origin only; no
inline code; framed only by the configured EHRs' pages, against clickjacking:
``embedding``), no referrer (the callback URL carries
the authorization code), and API answers are never cached.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cds_service.settings import Settings
from smart_app import api, launch
from smart_app.embedding import content_security_policy
from smart_app.patient_data import PatientCache
from smart_app.sessions import SessionStore

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, settings: Settings, sessions: SessionStore) -> None:
    """Mount the app on the service: /app/launch, /app/callback, /app/, /app/api/...

    Its parts go on ``app.state`` here, for its dependencies (``smart_app.deps``) and the
    launch to read.
    """
    app.state.app_sessions = sessions
    app.state.app_patient_cache = PatientCache()
    app.state.app_refresh_locks = weakref.WeakValueDictionary()
    csp = content_security_policy(settings)
    app.include_router(launch.router)
    app.include_router(api.router)

    @app.get("/app", include_in_schema=False)
    async def app_root() -> Response:
        return RedirectResponse("/app/", 308)

    @app.get("/app/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/app/static", StaticFiles(directory=STATIC), name="app-static")

    @app.middleware("http")
    async def app_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if request.url.path.startswith("/app"):
            response.headers["Content-Security-Policy"] = csp
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            if not request.url.path.startswith("/app/static"):
                response.headers["Cache-Control"] = "no-store"
        return response
