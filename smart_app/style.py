"""The EHR's SMART style (``smart_style_url``), applied where it cannot hurt.

SMART App Launch 2.x ("Styling") lets an EHR hand an app its colours and fonts so the
app looks at home. We fetch it on the server (the page's CSP allows no other origin),
only from the EHR's own origin, and keep only what is safe and readable:

- ``color_highlight`` becomes the accent colour only when it is a ``#rrggbb`` colour
  with a contrast ratio of at least 4.5:1 against white (WCAG 2.1, Success Criterion
  1.4.3, normal text), since links, focus rings and controls use it on white;
- ``font_family_body`` only when it is a plain font list (letters, digits, spaces,
  commas, hyphens, quotes): nothing that could carry ``url(...)`` or a declaration.

Anything else in the file is ignored; a failing fetch only means the default style.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

_HEX = re.compile(r"^#([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})$")
_FONT = re.compile(r"^[A-Za-z0-9 ,'\"-]{1,120}$")
#: WCAG 2.1 SC 1.4.3 (AA): 4.5:1 for normal-size text.
MIN_CONTRAST = 4.5
#: A style file is a few hundred bytes; anything much larger is not one.
MAX_STYLE_BYTES = 16_384
STYLE_TIMEOUT_S = 2.0


def _linear(channel: int) -> float:
    """sRGB channel to linear light (WCAG 2.1 definition of relative luminance)."""
    c = channel / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(hex_colour: str) -> float:
    match = _HEX.match(hex_colour)
    if match is None:
        raise ValueError(f"not a #rrggbb colour: {hex_colour!r}")
    r, g, b = (_linear(int(x, 16)) for x in match.groups())
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_with_white(hex_colour: str) -> float:
    """(L1 + 0.05) / (L2 + 0.05) with white (L = 1) as the lighter colour."""
    return 1.05 / (relative_luminance(hex_colour) + 0.05)


def safe_style(style: object) -> dict[str, str]:
    """What of an EHR's SMART style we apply (see the module docstring)."""
    if not isinstance(style, dict):
        return {}
    out: dict[str, str] = {}
    highlight = style.get("color_highlight")
    if (
        isinstance(highlight, str)
        and _HEX.match(highlight)
        and contrast_with_white(highlight) >= MIN_CONTRAST
    ):
        out["highlight"] = highlight.lower()
    font = style.get("font_family_body")
    if isinstance(font, str) and _FONT.match(font):
        out["font_family"] = font
    return out


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


async def fetch_style(http: httpx.AsyncClient, url: object, iss: str) -> dict[str, str]:
    """The safe part of the style at ``url``, which must be on the EHR's (iss's) origin."""
    if not isinstance(url, str) or _origin(url) != _origin(iss):
        return {}
    try:
        response = await http.get(url, timeout=STYLE_TIMEOUT_S)
        if response.status_code != 200 or len(response.content) > MAX_STYLE_BYTES:
            return {}
        body: Any = response.json()
    except (httpx.HTTPError, ValueError):
        return {}
    return safe_style(body)
