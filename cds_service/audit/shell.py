"""What every ``twin-cds audit`` command shares: exit codes, the bad-input error, the
settings from the flags, opening the audit log, printing JSON, and the runner that maps
errors to exit codes.

Its own module so that the commands (``cli`` and ``commands``) import it and not each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from cds_service.audit.log import AuditConfigError, AuditError, ChainedAuditLog, load_signer
from cds_service.audit.sql import SqliteAuditLog
from cds_service.settings import Settings

EXIT_OK = 0
EXIT_TAMPERED = 1
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Exit 2 with this message."""


def fail(code: int, message: str) -> NoReturn:
    print(f"twin-cds audit: {message}", file=sys.stderr)
    raise SystemExit(code)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    return Settings(**overrides)


def open_log(settings: Settings, *, sign: bool = False) -> ChainedAuditLog:
    signer = None
    if sign:
        if settings.audit_signing_key_file is None:
            raise BadInput(
                "no audit signing key configured (TWIN_CDS_AUDIT_SIGNING_KEY_FILE); "
                "a checkpoint cannot be signed"
            )
        signer = load_signer(settings.audit_signing_key_file)
    if settings.database_url:
        from cds_service.audit.sql import PostgresAuditLog

        return PostgresAuditLog(settings.database_url, signer=signer, checkpoint_every=0)
    if not settings.audit_db.is_file():
        raise BadInput(f"no audit trail at {settings.audit_db}")
    return SqliteAuditLog(settings.audit_db, signer=signer, checkpoint_every=0)


def parse_when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadInput(f"{flag} {text!r} is not an ISO 8601 date or time") from exc


def run(args: argparse.Namespace) -> None:
    """Entry for ``twin-cds audit ...`` (set as the sub-parser's func)."""
    try:
        code = args.audit_func(args)
    except (BadInput, AuditConfigError) as exc:
        fail(EXIT_BAD_INPUT, str(exc))
    except AuditError as exc:
        fail(EXIT_TAMPERED, str(exc))
    if code:
        raise SystemExit(code)
