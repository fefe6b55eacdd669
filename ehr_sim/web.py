"""The simulator's web plumbing: query strings, strict form bodies, FHIR error bodies
and its plain HTML pages (no script; never framed except the chart's app frame).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

#: A form or token request body larger than this is not a browser or an OAuth client.
MAX_FORM_BYTES = 64 * 1024
#: FHIR R4 id datatype: [A-Za-z0-9\-\.]{1,64} (http://hl7.org/fhir/R4/datatypes.html#id).
_FHIR_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")
#: HTML pages: no framing (clickjacking of the picker), no scripts, no referrer leaks.
HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FHIR_JSON = "application/fhir+json"


def is_fhir_id(value: str) -> bool:
    # An all-dots id ("..") is a path segment, not a resource: never forward it.
    return _FHIR_ID.fullmatch(value) is not None and value.strip(".") != ""


def with_query(url: str, params: Mapping[str, str | None]) -> str:
    """``url`` with ``params`` set, keeping the rest of the query it already had."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    added = [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(kept + added)))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def single_values(items: Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """RFC 6749 §3.1: empty parameters count as absent, and none may repeat."""
    values: dict[str, str] = {}
    repeated: set[str] = set()
    for key, value in items:
        if value == "":
            continue
        if key in values:
            repeated.add(key)
        else:
            values[key] = value
    return values, repeated


class BadForm(ValueError):
    """A form body that is not one url-encoded form of single values."""


async def read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise BadForm("the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadForm("the body is too large")
    try:
        items = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm("the body is not a url-encoded form") from exc
    values, repeated = single_values(items)
    if repeated:
        raise BadForm(f"parameters given more than once: {', '.join(sorted(repeated))}")
    return values


def patient_name(patient: Mapping[str, Any]) -> str:
    """The official name if there is one, as 'Given Family'; FHIR HumanName otherwise."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    if not names:
        return "(no name recorded)"
    name = next((n for n in names if n.get("use") == "official"), names[0])
    if isinstance(name.get("text"), str) and name["text"].strip():
        return str(name["text"]).strip()
    given = [g for g in name.get("given") or [] if isinstance(g, str)]
    family = name.get("family")
    words = [*given, family] if isinstance(family, str) else given
    return " ".join(words).strip() or "(no name recorded)"


def outcome(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": message}],
    }
    return Response(json.dumps(body), status, headers=dict(headers or {}), media_type=FHIR_JSON)


_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c1e21}
header.ehr{background:#1f3b57;color:#fff;padding:.6rem 1rem}
header.ehr a{color:#fff}
main{max-width:60rem;margin:1rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #d8dde3}
.chart{background:#fff;border:1px solid #d8dde3;padding:.8rem 1rem;margin-bottom:1rem}
.card{background:#fff;border:1px solid #d8dde3;border-left:.4rem solid #1f5f99;
 padding:.6rem 1rem;margin:.6rem 0}
.card.warning{border-left-color:#b36b00}.card.critical{border-left-color:#9e1b1b}
.detail{white-space:pre-wrap}
.indicator{font-weight:bold;text-transform:uppercase;font-size:.8rem}
button{font:inherit;padding:.35rem .8rem;cursor:pointer}
button:focus,input:focus,a:focus{outline:3px solid #f0b400;outline-offset:2px}
fieldset{background:#fff;border:1px solid #d8dde3}
.choice{display:block;padding:.3rem 0}
.error{color:#9e1b1b}
"""


def html_page(
    title: str, body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · EHR simulator</title><style>{_CSS}</style></head><body>"
        '<header class="ehr"><a href="/ehr">EHR simulator</a></header>'
        f"<main>{body}</main></body></html>"
    )
    return HTMLResponse(page, status, headers=dict(headers or HTML_HEADERS))


def error_page(status: int, title: str, message: str) -> HTMLResponse:
    return html_page(
        title, f'<h1>{escape(title)}</h1><p class="error">{escape(message)}</p>', status
    )


def hidden(name: str, value: str | None) -> str:
    if value is None:
        return ""
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
