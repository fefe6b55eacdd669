"""``twin-cds audit verify|show|export|checkpoint``: the audit trail from the command line.

Settings come from ``TWIN_CDS_*`` as for the service (``--data-dir`` and
``--database-url`` override them). JSON (NDJSON for export) goes to stdout.

Exit codes: 0 the chain is intact (or the command did what it said); 1 tampering found,
with the first bad record's seq and the reason on stderr; 2 bad input (no such record,
no audit trail where the settings point, no signing key for a checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cds_service.audit.chain import CHAIN_BROKEN
from cds_service.audit.commands import add_follow_through_parsers
from cds_service.audit.fhir import export_resources, to_ndjson
from cds_service.audit.log import AuditQuery, RecordKind, load_verify_key
from cds_service.audit.shell import (
    EXIT_OK,
    EXIT_TAMPERED,
    BadInput,
    open_log,
    parse_when,
    print_json,
    run,
    settings_from,
)
from cds_service.audit.sql import verify_key_from
from cds_service.settings import Settings


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    key = load_verify_key(Path(args.verify_key)) if args.verify_key else verify_key_from(settings)
    log = open_log(settings)
    try:
        report = log.verify(key)
    finally:
        log.close()
    print_json(report.to_json())
    for warning in report.warnings:
        print(f"twin-cds audit: warning: {warning}", file=sys.stderr)
    if report.first_bad is not None:
        print(
            f"twin-cds audit: TAMPERING: first bad record {report.first_bad.seq}: "
            f"{report.first_bad.reason}",
            file=sys.stderr,
        )
        return EXIT_TAMPERED
    return EXIT_OK


def _twin_state(settings: Settings, body: dict[str, Any]) -> dict[str, Any] | None:
    twin = body.get("twin")
    if not twin or not body.get("patient"):
        return None
    from cds_service.stores import open_twin_store
    from twin_engine.errors import TwinEngineError

    if not settings.database_url and not settings.twin_db.is_file():
        return {"version": twin["version"], "error": f"no twin store at {settings.twin_db}"}
    try:
        store = open_twin_store(settings)
        try:
            key = twin.get("storeKey") or body["patient"]
            stored = store.load(key, int(twin["version"]))
        finally:
            store.close()
        content_hash = stored.twin().content_hash()
    except TwinEngineError as exc:
        return {"version": twin["version"], "error": str(exc)}
    return {
        "version": stored.version.version,
        "contentHash": content_hash,
        "recordedContentHash": twin["contentHash"],
        "hashMatches": content_hash == twin["contentHash"],
        "createdAt": stored.version.created_at.isoformat(),
        "state": stored.twin_json,
    }


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    log = open_log(settings)
    try:
        rec = log.get(args.seq)
        if rec is None:
            raise BadInput(f"no audit record {args.seq}")
        previous = log.get(args.seq - 1) if args.seq > 1 else None
        feedback = (
            {card: log.feedback_for(card) for card in log.cards_of(rec.seq)}
            if rec.kind == "hook"
            else {}
        )
    finally:
        log.close()
    check = rec.check(previous)
    if rec.damage:
        print(
            f"twin-cds audit: DAMAGED: record {rec.seq}: {rec.damage}; the chain is {CHAIN_BROKEN}",
            file=sys.stderr,
        )
    print_json(
        {
            "record": rec.to_json(),
            "check": check,
            "feedback": feedback,
            # The state the model saw: the twin version the record names, from the store.
            "twin": _twin_state(settings, rec.body) if rec.kind == "hook" else None,
        }
    )
    return EXIT_OK if all(check.values()) else EXIT_TAMPERED


def cmd_export(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    kind: RecordKind | None = None if args.kind == "any" else args.kind
    query = AuditQuery(
        patient_id=args.patient,
        service_id=args.service,
        model_id=args.model,
        since=parse_when(args.since, "--since"),
        until=parse_when(args.until, "--until"),
        kind=kind,
        limit=0,
    )
    log = open_log(settings)
    try:
        out = sys.stdout.buffer
        if args.out:
            out = Path(args.out).open("wb")  # noqa: SIM115 - closed below
        try:
            if args.format == "records":
                for rec in log.query(query):
                    out.write(json.dumps(rec.to_json()).encode() + b"\n")
            else:
                for line in to_ndjson(export_resources(log.query(query))):
                    out.write(line)
            out.flush()
        finally:
            if args.out:
                out.close()
    finally:
        log.close()
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    log = open_log(settings_from(args), sign=True)
    try:
        rec = log.checkpoint()
    finally:
        log.close()
    print_json(rec.to_json())
    return EXIT_OK


def add_audit_parser(sub: Any) -> None:
    """Register ``audit`` on the ``twin-cds`` sub-parsers (``sub.add_parser``)."""
    audit = sub.add_parser("audit", help="verify, show and export the audit trail")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=None, help="default: TWIN_CDS_DATA_DIR")
    common.add_argument("--database-url", default=None, help="default: TWIN_CDS_DATABASE_URL")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_sub.add_parser(
        "verify", parents=[common], help="check the hash chain and checkpoint signatures"
    )
    verify.add_argument("--verify-key", default=None, help="Ed25519 public key (PEM)")
    verify.set_defaults(func=run, audit_func=cmd_verify)

    show = audit_sub.add_parser(
        "show", parents=[common], help="one record, its feedback and the twin it used"
    )
    show.add_argument("seq", type=int, help="the record's seq")
    show.set_defaults(func=run, audit_func=cmd_show)

    export = audit_sub.add_parser(
        "export", parents=[common], help="FHIR R4 NDJSON (AuditEvent, Provenance, ...)"
    )
    export.add_argument("--patient")
    export.add_argument("--service")
    export.add_argument("--model")
    export.add_argument("--since", help="ISO 8601, inclusive")
    export.add_argument("--until", help="ISO 8601, exclusive")
    export.add_argument(
        "--kind",
        choices=["hook", "feedback", "auditor-read", "app-access", "population-run", "any"],
        default="any",
    )
    export.add_argument("--format", choices=["fhir", "records"], default="fhir")
    export.add_argument("--out", default=None, help="file (default: stdout)")
    export.set_defaults(func=run, audit_func=cmd_export)

    checkpoint = audit_sub.add_parser(
        "checkpoint", parents=[common], help="sign the chain as it is now"
    )
    checkpoint.set_defaults(func=run, audit_func=cmd_checkpoint)

    # replay, stats, selfcheck: the follow-through commands, in their own module.
    add_follow_through_parsers(audit_sub, common)
