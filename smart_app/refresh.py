"""Keeping a session's access token alive: the refresh grant (RFC 6749 §6) with rotation.

The API calls ``refresh_session`` before it reads the EHR's FHIR server when
``refresh_due`` says the token is about to expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from typing import Any

import httpx
from fastapi import Request

from cds_service.settings import Settings
from smart_app.ehr_oauth import token_lifetime
from smart_app.sessions import SessionStore

log = logging.getLogger("twin_cds.smart_app")

#: Renew the access token this long before it expires (at most half its lifetime), so
#: a call that starts with it does not reach the EHR with an expired one.
REFRESH_MARGIN_S = 60.0


def refresh_due(data: dict[str, Any], now: float) -> bool:
    """True when the session has a refresh token and its access token is about to expire."""
    if not data.get("refresh_token") or "access_expires_at" not in data:
        return False
    margin = min(REFRESH_MARGIN_S, float(data.get("access_lifetime_s", 0)) / 2)
    return now >= float(data["access_expires_at"]) - margin


async def refresh_session(
    request: Request, session_id: str, data: dict[str, Any]
) -> dict[str, Any] | None:
    """Renew the session's access token with its refresh token (RFC 6749 §6), storing the
    rotated refresh token; the session as it now is, or None when it cannot go on
    (the EHR refused and the access token has expired).

    One renewal per session at a time in this process: with rotation, two concurrent
    renewals would present the same refresh token twice, which an EHR may take as
    theft and answer by revoking the session's tokens.
    """
    store: SessionStore = request.app.state.app_sessions
    # Weak values: a session's lock lives only while a renewal holds or awaits it.
    locks: weakref.WeakValueDictionary[str, asyncio.Lock] = request.app.state.app_refresh_locks
    key = hashlib.sha256(session_id.encode()).hexdigest()
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    async with lock:
        current = store.get(session_id, "active")
        if current is None:
            return None
        if not refresh_due(current, time.time()):
            return current  # renewed by the call that held the lock before us
        settings: Settings = request.app.state.settings
        http: httpx.AsyncClient = request.app.state.runtime.http
        status: int | None = None
        try:
            response = await http.post(
                current["token_endpoint"],
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": current["refresh_token"],
                    "client_id": current["client_id"],
                },
                headers={"Accept": "application/json"},
            )
            status = response.status_code
            body = response.json() if status == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("SMART token refresh failed (%s)", type(exc).__name__)
            body = None
        ok = (
            isinstance(body, dict)
            and str(body.get("token_type", "")).lower() == "bearer"
            and isinstance(body.get("access_token"), str)
        )
        if not ok or not isinstance(body, dict):
            log.warning("SMART token refresh refused (HTTP %s)", status)
            still_valid = float(current["access_expires_at"]) > time.time()
            return current if still_valid else None
        now = time.time()
        lifetime = token_lifetime(body.get("expires_in"), settings.app_session_max_s)
        renewed = {
            **current,
            "access_token": body["access_token"],
            "access_expires_at": now + lifetime,
            "access_lifetime_s": lifetime,
            # Rotation: the EHR's new refresh token replaces the spent one; an EHR that
            # does not rotate keeps the old one valid, so it is kept.
            "refresh_token": body.get("refresh_token") or current["refresh_token"],
        }
        if isinstance(body.get("scope"), str):
            renewed["scope"] = body["scope"]
        if not store.replace(session_id, "active", renewed):
            return None
        log.info("SMART access token renewed (iss %s)", current["iss"])
        return renewed
