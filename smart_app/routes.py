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

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

    app.add_middleware(AppHeaders, csp=csp)


class AppHeaders:
    """ASGI middleware: the ``/app`` answers' security headers (the module's docstring).

    Plain ASGI, not starlette's ``BaseHTTPMiddleware``, which streams every response of
    every route (hook calls too) through an anyio task group."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/app"):
            await self.app(scope, receive, send)
            return
        api = not path.startswith("/app/static")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = self.csp
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if api:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
