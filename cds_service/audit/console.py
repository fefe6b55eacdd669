"""The auditor console (``/audit/ui``): the audit trail for people, in plain HTML.

Pages: recommendations with filters, a record (twin, inputs, explanation, cards,
feedback, chain position) with replay, chain status, statistics with plots and the
forecast self-check, and exports (FHIR NDJSON, CSV). Every read is an ``auditor-read``
record on the chain, as through the API. Signing in (OpenID Connect with the hospital's
provider) is `console_signin`; the page shell, its CSP and stylesheet are `console_html`.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, Response

from cds_service.audit import console_signin
from cds_service.audit.api import record_read, visible_record
from cds_service.audit.auth import Auditor
from cds_service.audit.chain import CHAIN_BROKEN
from cds_service.audit.console_html import CSS, ConsoleUser, csrf_field, headers, page
from cds_service.audit.console_signin import SignInRequired, UserDep, check_csrf, settings_of
from cds_service.audit.log import (
    AuditorReadAction,
    AuditQuery,
    ChainedAuditLog,
    StoredAuditRecord,
    key_id,
)
from cds_service.audit.sql import verify_key_from

router = APIRouter(prefix="/audit/ui", include_in_schema=False)

#: The most records one page lists.
PAGE = 200


def install_console(app: FastAPI) -> None:
    """The sign-in and page routers, and the sign-in page for pages that need a session."""

    @app.exception_handler(SignInRequired)
    async def _to_sign_in(_: Request, __: SignInRequired) -> Response:
        return page(
            "Sign in",
            "<p>The audit console is for auditors of this service.</p>"
            '<p><a class="button" href="/audit/ui/login">Sign in with your organisation</a></p>',
            401,
        )

    app.include_router(console_signin.router)
    app.include_router(router)


def _log(request: Request) -> ChainedAuditLog:
    log: ChainedAuditLog = request.app.state.runtime.audit
    return log


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


# ---------------------------------------------------------------- pages


@router.get("/console.css")
async def stylesheet() -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


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
        + "".join(f"<td>{escape(str(cell))}</td>" for cell in _cells(r))
        + "</tr>"
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
    return page("Recommendations", body, user=user)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model") or {}
    return f"{model['id']} {model['version']}" if model else "-"


def _cells(r: StoredAuditRecord) -> tuple[str, str, str, str, int]:
    """Service, patient, model, status and card count: a row of the list and the CSV."""
    if r.damage:
        return "-", "-", "-", f"DAMAGED: {r.damage}; the chain is {CHAIN_BROKEN}", 0
    body = r.body
    return (
        str(body.get("service")),
        str(body.get("patient")),
        _model(body),
        str(body.get("status")),
        len(body.get("cards") or []),
    )


def _pre(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"


@router.get("/records/{seq}")
async def record_page(
    request: Request, user: UserDep, seq: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> HTMLResponse:
    log = _log(request)
    rec = visible_record(log, seq, user.tenant)
    _on_chain(log, user, "record", {"seq": seq}, [rec] if rec else [])
    if rec is None:
        return page("No such record", f"<p>There is no audit record {seq}.</p>", 404, user)
    if rec.damage:
        return page(f"Record {seq}", _damaged(rec, log), user=user)
    body = rec.body
    hash_ok = rec.check(None)["hashMatches"]
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
        f'<form method="post" action="/audit/ui/records/{seq}/replay">{csrf_field(user)}'
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
    return page(f"Record {seq}", "".join(parts), user=user)


def _damaged(rec: StoredAuditRecord, log: ChainedAuditLog) -> str:
    links = rec.check(log.get(rec.seq - 1) if rec.seq > 1 else None)["linksToPrevious"]
    return (
        f"<p><strong>DAMAGED: record {rec.seq}: {escape(str(rec.damage))}.</strong> "
        f"The chain is {escape(CHAIN_BROKEN)}.</p>"
        f"<dl><dt>Seq</dt><dd>{rec.seq}</dd><dt>Kind</dt><dd>{escape(rec.kind)}</dd>"
        f"<dt>Recorded</dt><dd>{escape(rec.recorded_at)}</dd><dt>Previous hash</dt><dd><code>"
        f"{escape(rec.prev_hash)}</code></dd><dt>Record hash</dt><dd><code>"
        f"{escape(rec.record_hash)}</code></dd><dt>Hash check</dt><dd>DOES NOT MATCH</dd>"
        f"<dt>Link to the record before</dt><dd>{'matches' if links else 'DOES NOT MATCH'}"
        "</dd></dl>"
    )


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

    check_csrf(user, csrf)
    log = _log(request)
    rec = visible_record(log, seq, user.tenant)
    _on_chain(log, user, "replay", {"seq": seq}, [rec] if rec else [])
    if rec is None:
        return page("No such record", f"<p>There is no audit record {seq}.</p>", 404, user)
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
    return page(f"Replay of record {seq}", body, user=user)


@router.get("/chain")
async def chain_page(request: Request, user: UserDep) -> HTMLResponse:
    log = _log(request)
    key = verify_key_from(settings_of(request))
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
    return page("Chain status", body, user=user)


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

    settings = settings_of(request)
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
        + "".join(
            f"<p><strong>DAMAGED: record {d['seq']}: {escape(d['reason'])}</strong>; not "
            f"counted. The chain is {escape(d['chain'])}.</p>"
            for d in stats["damaged"]
        )
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
    return page("Statistics", body, user=user)


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
        headers={**headers(), "Content-Disposition": 'attachment; filename="audit.ndjson"'},
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
        *text, cards = _cells(r)
        # A leading = + - @ would be a formula in a spreadsheet (CSV injection).
        writer.writerow([r.seq, r.recorded_at, *(_cell(t) for t in text), cards])
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={**headers(), "Content-Disposition": 'attachment; filename="audit.csv"'},
    )


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
