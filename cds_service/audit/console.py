"""The auditor console (``/audit/ui``): the audit trail for people, in plain HTML.

Sign-in is OpenID Connect with the hospital's provider (authorization code with PKCE
S256, state and nonce; ``TWIN_CDS_AUDIT_CONSOLE_ISSUER`` names one of the configured
auditor issuers, whose keys verify the id_token). The tokens never reach the browser and
are not kept: the id_token is verified once at the callback, and the session (in the
clinician app's sealed server-side store) holds only who signed in, the tenant and a
form token. The role (``auditor``) and tenant come from the id_token's claims; an
issuer bound to a tenant refuses a token naming another.

Pages: recommendations with filters, a record (twin, inputs, explanation, cards,
feedback, chain position) with replay, chain status, statistics with plots and the
forecast self-check, and exports (FHIR NDJSON, CSV). Every read is an ``auditor-read``
record on the chain, as through the API. No script at all: the CSP forbids it, styles
come from our own origin, plots are inline SVG.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import jwt
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cds_service.audit.api import record_read
from cds_service.audit.auth import Auditor, AuditorIssuerConfig
from cds_service.audit.log import (
    AuditorReadAction,
    AuditQuery,
    ChainedAuditLog,
    StoredAuditRecord,
    key_id,
    record_hash,
    record_tenant,
    verify_key_from,
)
from cds_service.settings import Settings

router = APIRouter(prefix="/audit/ui", include_in_schema=False)

COOKIE = "twin_audit_console"
#: A sign-in must come back within this (the provider's page, the user's password).
PENDING_TTL_S = 600
#: A console session's length: one working day, as the clinician app's default.
SESSION_TTL_S = 8 * 3600
PAGE = 200
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class _SignIn(Exception):
    """Not signed in (or the session ended): go to the sign-in page."""


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    iss: str
    sub: str
    tenant: str | None
    csrf: str


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _log(request: Request) -> ChainedAuditLog:
    log: ChainedAuditLog = request.app.state.runtime.audit
    return log


def _provider(settings: Settings) -> AuditorIssuerConfig:
    iss = settings.audit_console_issuer
    for auditor in settings.auditors:
        if iss is not None and auditor.iss == iss:
            return auditor
    raise HTTPException(404, "the auditor console is not configured")


def _html(
    title: str, body: str, status: int = 200, user: ConsoleUser | None = None
) -> HTMLResponse:
    nav = ""
    if user is not None:
        nav = (
            '<nav aria-label="Console"><a href="/audit/ui">Recommendations</a> '
            '<a href="/audit/ui/stats">Statistics</a> <a href="/audit/ui/chain">Chain</a> '
            f'<form method="post" action="/audit/ui/logout">{_csrf(user)}'
            f'<button type="submit">Sign out {escape(user.sub)}</button></form></nav>'
        )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · twin-cds audit</title>"
        '<link rel="stylesheet" href="/audit/ui/console.css"></head><body>'
        f'<header><p class="brand">twin-cds audit console</p>{nav}</header>'
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=_headers())


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CSP,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _csrf(user: ConsoleUser) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(user.csrf)}">'


def _secure(settings: Settings) -> bool:
    parts = urlsplit(settings.public_base_url)
    return not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def _set_cookie(response: Response, settings: Settings, value: str, max_age: int) -> None:
    # Lax: the provider's redirect back to the callback is a top-level cross-site navigation.
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/audit/ui",
        httponly=True,
        secure=_secure(settings),
        samesite="lax",
    )


def current_user(request: Request) -> ConsoleUser:
    data = request.app.state.app_sessions.get(request.cookies.get(COOKIE), "active")
    if not data or data.get("purpose") != "audit-console":
        raise _SignIn
    return ConsoleUser(data["iss"], data["sub"], data.get("tenant"), data["csrf"])


UserDep = Annotated[ConsoleUser, Depends(current_user)]


def install_console(app: FastAPI) -> None:
    """The router, and the sign-in redirect for pages that need a session."""

    @app.exception_handler(_SignIn)
    async def _to_sign_in(_: Request, __: _SignIn) -> Response:
        return _html(
            "Sign in",
            "<p>The audit console is for auditors of this service.</p>"
            '<p><a class="button" href="/audit/ui/login">Sign in with your organisation</a></p>',
            401,
        )

    app.include_router(router)


def _on_chain(
    log: ChainedAuditLog,
    user: ConsoleUser,
    action: AuditorReadAction,
    query: dict[str, Any],
    records: list[StoredAuditRecord] | None = None,
) -> None:
    """A console read on the chain like an API read, marked as the console's."""
    reader = Auditor(user.iss, user.sub, None, user.tenant)
    seqs = (r.seq for r in records or ())
    record_read(log, reader, action, {"console": True, **query}, seqs)


# ---------------------------------------------------------------- sign-in


async def _discover(request: Request, provider: AuditorIssuerConfig) -> dict[str, str]:
    http = request.app.state.runtime.http
    url = provider.iss.rstrip("/") + "/.well-known/openid-configuration"
    response = await http.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    doc = response.json()
    out: dict[str, str] = {}
    for name in ("authorization_endpoint", "token_endpoint"):
        endpoint = doc.get(name)
        # Only the configured provider is contacted: its endpoints must be on its origin.
        if not isinstance(endpoint, str) or not _same_origin(endpoint, provider.iss):
            raise HTTPException(502, f"the provider's {name} is not on {provider.iss}")
        out[name] = endpoint
    return out


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _redirect_uri(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + "/audit/ui/callback"


@router.get("/login")
async def login(request: Request) -> Response:
    settings = _settings(request)
    provider = _provider(settings)
    endpoints = await _discover(request, provider)
    state, verifier, nonce = (secrets.token_urlsafe(32) for _ in range(3))
    pending = request.app.state.app_sessions.create(
        "pending",
        {"purpose": "audit-console", "state": state, "verifier": verifier, "nonce": nonce},
        PENDING_TTL_S,
    )
    params = {
        "response_type": "code",
        "client_id": settings.audit_console_client_id,
        "redirect_uri": _redirect_uri(settings),
        "scope": "openid",
        "state": state,
        "nonce": nonce,
        "code_challenge": _s256(verifier),
        "code_challenge_method": "S256",
    }
    if settings.audit_console_aud:
        params["aud"] = settings.audit_console_aud
    response = RedirectResponse(
        endpoints["authorization_endpoint"] + "?" + urlencode(params), 302, headers=_headers()
    )
    _set_cookie(response, settings, pending, PENDING_TTL_S)
    return response


def _refused(message: str, status: int = 400) -> HTMLResponse:
    return _html("Sign-in refused", f"<p>{escape(message)}</p>", status)


def _verify_id_token(
    token: str, provider: AuditorIssuerConfig, client_id: str, nonce: str
) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    keys = jwt.PyJWKSet.from_dict(provider.jwks)
    key = next((k for k in keys.keys if k.key_id == header.get("kid")), None)
    if key is None:
        raise jwt.InvalidTokenError("no provider key has the id_token's kid")
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=list(provider.algorithms),
        audience=client_id,
        issuer=provider.iss,
        options={"require": ["exp", "iat", "sub", "iss", "aud"]},
    )
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise jwt.InvalidTokenError("the id_token's nonce is not the one sent")
    return claims


def _is_auditor(claims: dict[str, Any]) -> bool:
    roles = claims.get("roles")
    return claims.get("role") == "auditor" or (isinstance(roles, list) and "auditor" in roles)


@router.get("/callback")
async def callback(request: Request, code: str = "", state: str = "") -> Response:
    settings = _settings(request)
    provider = _provider(settings)
    pending = request.app.state.app_sessions.take(request.cookies.get(COOKIE), "pending")
    if not pending or pending.get("purpose") != "audit-console":
        return _refused("This sign-in was not started here, or it took too long. Start again.")
    if not code or not secrets.compare_digest(state, str(pending["state"])):
        return _refused("The provider's answer does not belong to this sign-in.")
    endpoints = await _discover(request, provider)
    answer = await request.app.state.runtime.http.post(
        endpoints["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": _redirect_uri(settings),
            "client_id": settings.audit_console_client_id,
            "code_verifier": pending["verifier"],
        },
        headers={"Accept": "application/json"},
    )
    if answer.status_code != 200:
        return _refused("The provider refused the sign-in code.", 502)
    id_token = answer.json().get("id_token")
    if not isinstance(id_token, str):
        return _refused("The provider sent no id_token.", 502)
    try:
        claims = _verify_id_token(
            id_token, provider, settings.audit_console_client_id, pending["nonce"]
        )
    except jwt.PyJWTError:
        return _refused("The provider's id_token could not be verified.", 401)
    if not _is_auditor(claims):
        return _refused("Your account does not have the auditor role.", 403)
    tenant = claims.get("tenant")
    if provider.tenant is not None and tenant not in (None, provider.tenant):
        return _refused("Your account names a tenant this provider may not read.", 403)
    session = request.app.state.app_sessions.create(
        "active",
        {
            "purpose": "audit-console",
            "iss": provider.iss,
            "sub": str(claims["sub"]),
            "tenant": provider.tenant or (tenant if isinstance(tenant, str) else None),
            "csrf": secrets.token_urlsafe(32),
        },
        SESSION_TTL_S,
    )
    # The access token and the id_token end here: nothing of them goes to the browser.
    response = RedirectResponse("/audit/ui", 303, headers=_headers())
    _set_cookie(response, settings, session, SESSION_TTL_S)
    return response


def _check_csrf(user: ConsoleUser, csrf: str) -> None:
    if not secrets.compare_digest(csrf, user.csrf):
        raise HTTPException(403, "form token mismatch")


@router.post("/logout")
async def logout(request: Request, user: UserDep, csrf: Annotated[str, Form()] = "") -> Response:
    _check_csrf(user, csrf)
    request.app.state.app_sessions.delete(request.cookies.get(COOKIE))
    response = RedirectResponse("/audit/ui", 303, headers=_headers())
    response.delete_cookie(COOKIE, path="/audit/ui")
    return response


# ---------------------------------------------------------------- pages


@router.get("/console.css")
async def stylesheet() -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


_FILTERS = ("patient", "service", "model", "version", "status", "since", "until")


def _query(params: dict[str, str], user: ConsoleUser, limit: int) -> AuditQuery:
    def when(name: str) -> datetime | None:
        text = params.get(name)
        if not text:
            return None
        try:
            return datetime.fromisoformat(text)
        except ValueError as exc:
            raise HTTPException(400, f"{name} {text!r} is not an ISO 8601 date or time") from exc

    return AuditQuery(
        patient_id=params.get("patient") or None,
        service_id=params.get("service") or None,
        model_id=params.get("model") or None,
        model_version=params.get("version") or None,
        status=params.get("status") or None,
        since=when("since"),
        until=when("until"),
        kind="hook",
        limit=limit,
        tenant=user.tenant,
    )


def _filter_form(params: dict[str, str]) -> str:
    hint = ' placeholder="YYYY-MM-DD"'
    fields = "".join(
        f'<label for="f-{name}">{name.capitalize()}</label>'
        f'<input id="f-{name}" name="{name}" value="{escape(params.get(name, ""))}"'
        f"{hint if name in ('since', 'until') else ''}>"
        for name in _FILTERS
    )
    return (
        f'<form class="filters" method="get" action="/audit/ui">{fields}'
        '<button type="submit">Filter</button></form>'
    )


@router.get("")
async def records_page(request: Request, user: UserDep) -> HTMLResponse:
    params = {k: v for k, v in request.query_params.items() if k in _FILTERS}
    q = _query(params, user, PAGE)
    log = _log(request)
    records = log.query(q)
    _on_chain(log, user, "query", q.to_json(), records)
    rows = "".join(
        "<tr>"
        f'<td><a href="/audit/ui/records/{r.seq}">{r.seq}</a></td>'
        f"<td>{escape(r.recorded_at[:19])}</td>"
        f"<td>{escape(str(r.body.get('service')))}</td>"
        f"<td>{escape(str(r.body.get('patient')))}</td>"
        f"<td>{escape(_model(r.body))}</td>"
        f"<td>{escape(str(r.body.get('status')))}</td>"
        f"<td>{len(r.body.get('cards') or [])}</td>"
        "</tr>"
        for r in records
    )
    export = urlencode(params)
    body = (
        _filter_form(params)
        + (f"<p>{len(records)} records" + (f" (the first {PAGE})" if len(records) == PAGE else ""))
        + f'. Export: <a href="/audit/ui/export.ndjson?{escape(export)}">FHIR NDJSON</a> '
        f'<a href="/audit/ui/export.csv?{escape(export)}">CSV</a></p>'
        + '<table><caption>Recommendations</caption><thead><tr><th scope="col">Seq</th>'
        '<th scope="col">Recorded (UTC)</th><th scope="col">Service</th>'
        '<th scope="col">Patient</th><th scope="col">Model</th><th scope="col">Status</th>'
        f'<th scope="col">Cards</th></tr></thead><tbody>{rows}</tbody></table>'
    )
    return _html("Recommendations", body, user=user)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model") or {}
    return f"{model['id']} {model['version']}" if model else "-"


def _tenant_record(log: ChainedAuditLog, seq: int, user: ConsoleUser) -> StoredAuditRecord | None:
    rec = log.get(seq)
    if rec is not None and user.tenant is not None and record_tenant(rec) != user.tenant:
        return None  # another tenant's record is, to this auditor, no record
    return rec


def _pre(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"


@router.get("/records/{seq}")
async def record_page(
    request: Request, user: UserDep, seq: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> HTMLResponse:
    log = _log(request)
    rec = _tenant_record(log, seq, user)
    _on_chain(log, user, "record", {"seq": seq}, [rec] if rec else [])
    if rec is None:
        return _html("No such record", f"<p>There is no audit record {seq}.</p>", 404, user)
    body = rec.body
    hash_ok = rec.record_hash == record_hash(
        rec.prev_hash, rec.recorded_at, body, seq=rec.seq, kind=rec.kind
    )
    feedback = (
        {card: log.feedback_for(card) for card in log.cards_of(seq)} if rec.kind == "hook" else {}
    )
    cards = "".join(
        f"<li><strong>{escape(str(c.get('summary')))}</strong> "
        f"({escape(str(c.get('indicator', '')))})</li>"
        for c in body.get("cards") or []
    )
    inputs = "".join(
        f"<tr><td>{escape(str(i.get('name')))}</td><td>{escape(str(i.get('value')))}</td>"
        f"<td>{escape(str(i.get('unit', '')))}</td><td>{escape(str(i.get('time')))}</td></tr>"
        for i in body.get("inputs") or []
    )
    parts = [
        f"<p>Recorded {escape(rec.recorded_at)} · {escape(rec.kind)} · "
        f"{escape(str(body.get('service')))} · status {escape(str(body.get('status')))}</p>",
        f'<form method="post" action="/audit/ui/records/{seq}/replay">{_csrf(user)}'
        '<button type="submit">Replay this recommendation</button></form>',
        "<h2>Chain position</h2>",
        f"<dl><dt>Seq</dt><dd>{rec.seq}</dd><dt>Previous hash</dt><dd><code>"
        f"{escape(rec.prev_hash)}</code></dd><dt>Record hash</dt><dd><code>"
        f"{escape(rec.record_hash)}</code></dd><dt>Hash check</dt><dd>"
        f"{'matches' if hash_ok else 'DOES NOT MATCH'}</dd></dl>",
        "<h2>Twin and model</h2>",
        _pre({"twin": body.get("twin"), "model": body.get("model")}),
        _twin_state(request, body),
        "<h2>Inputs</h2>",
        '<table><thead><tr><th scope="col">Input</th><th scope="col">Value</th>'
        f'<th scope="col">Unit</th><th scope="col">Measured</th></tr></thead>'
        f"<tbody>{inputs}</tbody></table>",
        "<h2>Outputs and explanation</h2>",
        _pre({"outputs": body.get("outputs"), "explanation": body.get("explanation")}),
        "<h2>Cards</h2>",
        f"<ul>{cards}</ul>" if cards else "<p>No card was sent.</p>",
        "<h2>Feedback</h2>",
        _pre(feedback),
    ]
    return _html(f"Record {seq}", "".join(parts), user=user)


def _twin_state(request: Request, body: dict[str, Any]) -> str:
    """The state the models saw: the twin version the record names, from the store."""
    from twin_engine.errors import TwinEngineError

    twin = body.get("twin")
    if not twin or not body.get("patient"):
        return ""
    try:
        stored = request.app.state.runtime.twins.load(
            twin.get("storeKey") or body["patient"], int(twin["version"])
        )
    except TwinEngineError as exc:
        return f"<p>The twin version is not in the store: {escape(str(exc))}</p>"
    try:
        matches = stored.twin().content_hash() == twin["contentHash"]
        verdict = f"content hash {'matches' if matches else 'DOES NOT MATCH'} the record"
    except TwinEngineError as exc:  # the stored state no longer validates (TwinStateError)
        verdict = f"the stored state DOES NOT LOAD: {exc}"
    return (
        f"<details><summary>Twin state, version {stored.version.version} "
        f"({escape(verdict)})</summary>"
        f"{_pre(stored.twin_json)}</details>"
    )


@router.post("/records/{seq}/replay")
async def replay_page(
    request: Request,
    user: UserDep,
    seq: Annotated[int, Path(ge=1, le=2**63 - 1)],
    csrf: Annotated[str, Form()] = "",
) -> HTMLResponse:
    from cds_service.audit.replay import ModelArchive, installed_shas, replay_record

    _check_csrf(user, csrf)
    log = _log(request)
    rec = _tenant_record(log, seq, user)
    _on_chain(log, user, "replay", {"seq": seq}, [rec] if rec else [])
    if rec is None:
        return _html("No such record", f"<p>There is no audit record {seq}.</p>", 404, user)
    rt = request.app.state.runtime
    report = replay_record(
        rec,
        twins=rt.twins,
        archive=ModelArchive(rt.settings.model_archive_dir),
        installed=installed_shas(rt.registry),
    )
    checks = "".join(
        f"<tr><td>{escape(c.part)}</td><td>{'identical' if c.identical else 'differs'}</td>"
        f"<td>{escape(c.difference or '')}</td></tr>"
        for c in report.checks
    )
    body = (
        f'<p class="outcome">Outcome: <strong>{escape(report.outcome)}</strong></p>'
        f"<p>{escape(report.reason)}</p>"
        + (
            '<table><thead><tr><th scope="col">Part</th><th scope="col">Replay</th>'
            f'<th scope="col">First difference</th></tr></thead><tbody>{checks}</tbody></table>'
            if checks
            else ""
        )
        + "".join(f"<p>{escape(n)}</p>" for n in report.notes)
        + f'<p><a href="/audit/ui/records/{seq}">Back to record {seq}</a></p>'
    )
    return _html(f"Replay of record {seq}", body, user=user)


@router.get("/chain")
async def chain_page(request: Request, user: UserDep) -> HTMLResponse:
    log = _log(request)
    key = verify_key_from(_settings(request))
    report = log.verify(key)
    _on_chain(log, user, "verify", {})
    signer = f"Ed25519 key {key_id(key)}" if key is not None else "no verify key configured"
    status = (
        "intact"
        if report.first_bad is None
        else f"BROKEN at record {report.first_bad.seq}: {report.first_bad.reason}"
    )
    body = (
        f'<p class="outcome">The chain is <strong>{escape(status)}</strong>.</p>'
        f"<dl><dt>Records</dt><dd>{report.records}</dd><dt>Last seq</dt><dd>{report.last_seq}"
        f"</dd><dt>Signed checkpoints</dt><dd>{report.checkpoints} ({report.signatures_checked}"
        f" signatures checked)</dd><dt>Signed through</dt><dd>{report.signed_through}</dd>"
        f"<dt>Signer</dt><dd>{escape(signer)}</dd></dl>"
        + "".join(f"<p>Warning: {escape(w)}</p>" for w in report.warnings)
    )
    return _html("Chain status", body, user=user)


def _bars(title: str, groups: list[dict[str, Any]]) -> str:
    """A stacked horizontal bar per group: accepted, overridden, no response (inline SVG)."""
    row_h, width, label_w = 22, 360, 220
    height = row_h * max(len(groups), 1) + 10
    rects = []
    for i, g in enumerate(groups):
        y = 5 + i * row_h
        x = label_w
        rects.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(str(g["key"]))}</text>'
        )
        for part, cls in (
            ("accepted", "acc"),
            ("overridden", "ovr"),
            ("noResponse", "none"),
        ):
            w = width * g[part] / g["cards"] if g["cards"] else 0
            rects.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}">'
                f"<title>{escape(str(g['key']))}: {part} {g[part]} of {g['cards']}</title></rect>"
            )
            x += w
    return (
        f'<figure><svg role="img" aria-label="{escape(title)}" width="{label_w + width + 10}" '
        f'height="{height}" viewBox="0 0 {label_w + width + 10} {height}">{"".join(rects)}</svg>'
        f"<figcaption>{escape(title)}: accepted (dark), overridden (mid), no response "
        "(light)</figcaption></figure>"
    )


@router.get("/stats")
async def stats_page(request: Request, user: UserDep, since: str = "") -> HTMLResponse:
    from cds_service.audit.replay import ModelArchive
    from cds_service.audit.selfcheck import self_check_of_log
    from cds_service.audit.stats import DIMENSIONS, follow_through

    settings = _settings(request)
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError as exc:
            raise HTTPException(400, f"since {since!r} is not an ISO 8601 date") from exc
    log = _log(request)
    stats = follow_through(log, since=when, tenant=user.tenant).to_json()
    _on_chain(log, user, "stats", {"since": since or None, "tenant": user.tenant})
    check = self_check_of_log(
        log, ModelArchive(settings.model_archive_dir), settings, tenant=user.tenant
    )
    _on_chain(log, user, "selfcheck", {"tenant": user.tenant})
    tables = []
    for dim in DIMENSIONS:
        groups = stats["groups"][dim]
        rows = "".join(
            f"<tr><td>{escape(str(g['key']))}</td><td>{g['cards']}</td><td>{g['accepted']}</td>"
            f"<td>{g['overridden']}</td><td>{g['noResponse']}</td><td>"
            f"{escape(', '.join(f'{k} {v}' for k, v in g['overrideReasons'].items()) or '-')}"
            "</td></tr>"
            for g in groups
        )
        tables.append(
            f"<h2>By {dim}</h2>"
            + _bars(f"Responses by {dim}", groups)
            + f'<table><thead><tr><th scope="col">{dim.capitalize()}</th>'
            '<th scope="col">Cards</th><th scope="col">Accepted</th>'
            '<th scope="col">Overridden</th><th scope="col">No response</th>'
            f'<th scope="col">Override reasons</th></tr></thead><tbody>{rows}</tbody></table>'
        )
    models = "".join(
        f"<tr><td>{escape(m['model'])} {escape(m['version'])}</td><td>{m['pairs']}</td>"
        f"<td>{100 * m['mdpe']:+.1f}%</td><td>{100 * m['mdape']:.1f}%</td>"
        f"<td>{'DRIFT' if m['drift'] else 'no'}</td><td>{escape(m['reason'])}</td></tr>"
        for m in check["models"]
    )
    total = stats["total"]
    body = (
        '<form class="filters" method="get" action="/audit/ui/stats">'
        '<label for="f-since">Since</label>'
        f'<input id="f-since" name="since" value="{escape(since)}" placeholder="YYYY-MM-DD">'
        '<button type="submit">Show</button></form>'
        f"<p>{total['cards']} cards: {total['accepted']} accepted, {total['overridden']} "
        f"overridden, {total['noResponse']} without response.</p>"
        + "".join(tables)
        + "<h2>Forecast self-check (vancomycin levels)</h2>"
        + (
            '<table><thead><tr><th scope="col">Model</th><th scope="col">Pairs</th>'
            '<th scope="col">MDPE</th><th scope="col">MDAPE</th><th scope="col">Drift</th>'
            f'<th scope="col">Why</th></tr></thead><tbody>{models}</tbody></table>'
            if models
            else "<p>No forecast has a later measured level yet.</p>"
        )
    )
    return _html("Statistics", body, user=user)


@router.get("/export.ndjson")
async def export_ndjson(request: Request, user: UserDep) -> Response:
    from cds_service.audit.fhir import export_resources, to_ndjson

    params = {k: v for k, v in request.query_params.items() if k in _FILTERS}
    q = _query(params, user, 10_000)
    log = _log(request)
    records = log.query(q)
    _on_chain(log, user, "export", q.to_json(), records)
    return Response(
        b"".join(to_ndjson(export_resources(records))),
        media_type="application/fhir+ndjson",
        headers={**_headers(), "Content-Disposition": 'attachment; filename="audit.ndjson"'},
    )


@router.get("/export.csv")
async def export_csv(request: Request, user: UserDep) -> Response:
    params = {k: v for k, v in request.query_params.items() if k in _FILTERS}
    q = _query(params, user, 10_000)
    log = _log(request)
    records = log.query(q)
    _on_chain(log, user, "export", {**q.to_json(), "format": "csv"}, records)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["seq", "recorded_at", "service", "patient", "model", "status", "cards"])
    for r in records:
        writer.writerow(
            [
                r.seq,
                r.recorded_at,
                # A leading = + - @ would be a formula in a spreadsheet (CSV injection).
                _cell(str(r.body.get("service"))),
                _cell(str(r.body.get("patient"))),
                _cell(_model(r.body)),
                _cell(str(r.body.get("status"))),
                len(r.body.get("cards") or []),
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={**_headers(), "Content-Disposition": 'attachment; filename="audit.csv"'},
    )


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


_CSS = """
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
