"""The app inside the EHR's frame: which pages may frame it, and a cookie that survives it.

SMART App Launch 2.x lets an EHR open an app "in a new browser instance (or iframe)",
and most EHRs embed apps. Framing is allowed only for the configured EHRs: CSP
``frame-ancestors`` lists their origins (each server's ``frame_origins``, by default the
origin of its ``iss``), so every other origin still cannot frame the app (clickjacking,
CSP Level 2 §7.7.3).

In a frame under another site, a SameSite=Lax cookie is never sent (RFC 6265bis §5.5.7),
so the session cookie is ``SameSite=None; Secure; Partitioned`` there: Partitioned
(CHIPS) keys it to the top-level site, which browsers that block third-party cookies
still allow. Secure is required by SameSite=None; browsers accept it from
``http://127.0.0.1`` and ``http://localhost`` (potentially trustworthy origins, W3C
Secure Contexts §3.2), so the loopback demo and tests use the same cookie.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cds_service.settings import Settings

COOKIE = "twin_cds_session"
COOKIE_PATH = "/app"

_CSP_REST = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'"
)


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (default ports dropped), else None."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    port = parts.port
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def frame_ancestors(settings: Settings) -> tuple[str, ...]:
    """The origins that may frame the app, in configuration order (none: no framing)."""
    if not settings.app_embed_in_ehr:
        return ()
    found: list[str] = []
    for server in settings.smart_servers:
        configured = server.frame_origins if server.frame_origins is not None else (server.iss,)
        for url in configured:
            o = origin(url)
            if o is not None and o not in found:
                found.append(o)
    return tuple(found)


def content_security_policy(settings: Settings) -> str:
    """The app's CSP: our own origin for everything, framed only by the configured EHRs."""
    allowed = frame_ancestors(settings)
    ancestors = " ".join(allowed) if allowed else "'none'"
    return f"{_CSP_REST}; frame-ancestors {ancestors}"


def session_cookie(settings: Settings, session_id: str, max_age: int) -> str:
    """The Set-Cookie value of the session id (written by hand: the web framework can
    set Partitioned only on Python 3.14 and later)."""
    attributes = [f"{COOKIE}={session_id}", f"Max-Age={int(max_age)}", f"Path={COOKIE_PATH}"]
    attributes.append("HttpOnly")
    if frame_ancestors(settings):
        attributes += ["Secure", "SameSite=None", "Partitioned"]
    else:
        # Lax, not Strict: the EHR's redirect back to /app/callback is a top-level
        # navigation from another site, on which a Strict cookie would not be sent.
        if _secure_transport(settings):
            attributes.append("Secure")
        attributes.append("SameSite=Lax")
    return "; ".join(attributes)


def expired_session_cookie(settings: Settings) -> str:
    """The Set-Cookie value that deletes the session cookie (same attributes, so a
    partitioned cookie is deleted in its partition)."""
    return session_cookie(settings, '""', 0)


def _secure_transport(settings: Settings) -> bool:
    """Secure everywhere but a loopback http address (development and the tests)."""
    parts = urlsplit(settings.public_base_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return not (parts.scheme == "http" and loopback)
