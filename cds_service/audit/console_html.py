"""The auditor console's page shell: one HTML frame, its headers and its stylesheet.

No script at all: the CSP forbids it, styles come from our own origin, plots are inline SVG.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from fastapi.responses import HTMLResponse

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in auditor, as the pages need them (the session holds no token)."""

    iss: str
    sub: str
    tenant: str | None
    csrf: str


def page(title: str, body: str, status: int = 200, user: ConsoleUser | None = None) -> HTMLResponse:
    """A console page: the navigation (with sign-out) when someone is signed in."""
    nav = ""
    if user is not None:
        nav = (
            '<nav aria-label="Console"><a href="/audit/ui">Recommendations</a> '
            '<a href="/audit/ui/stats">Statistics</a> <a href="/audit/ui/chain">Chain</a> '
            f'<form method="post" action="/audit/ui/logout">{csrf_field(user)}'
            f'<button type="submit">Sign out {escape(user.sub)}</button></form></nav>'
        )
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · twin-cds audit</title>"
        '<link rel="stylesheet" href="/audit/ui/console.css"></head><body>'
        f'<header><p class="brand">twin-cds audit console</p>{nav}</header>'
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=headers())


def headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def csrf_field(user: ConsoleUser) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(user.csrf)}">'


CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #fff; }
header { background: #1d3557; color: #fff; padding: 0.5rem 1rem; display: flex;
  justify-content: space-between; align-items: center; flex-wrap: wrap; }
header a, header button { color: #fff; margin-right: 1rem; }
header form { display: inline; }
header button { background: none; border: 1px solid #fff; padding: 0.2rem 0.5rem; }
.brand { font-weight: bold; margin: 0; }
main { padding: 1rem; max-width: 72rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #767676; padding: 0.25rem 0.5rem; text-align: left; }
caption { text-align: left; font-weight: bold; }
.filters label { margin: 0 0.25rem 0 0.75rem; }
pre { background: #f4f4f4; padding: 0.5rem; overflow-x: auto; }
a { color: #0b5394; }
a.button { display: inline-block; background: #0b5394; color: #fff; padding: 0.4rem 0.8rem; }
svg text { font-size: 12px; fill: #1a1a1a; }
rect.acc { fill: #1d3557; } rect.ovr { fill: #6c8ebf; } rect.none { fill: #c9d6ea; }
"""
