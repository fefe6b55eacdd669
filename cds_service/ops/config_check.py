"""``twin-cds config check``: is this configuration fit to go live in a hospital?

The service starts with development defaults (authentication may be switched off, no
audit signing key, http links); each is fine on a laptop and wrong in production. The
check names every problem, one a line, and exits 2 when there is any, so a deployment
pipeline can refuse to roll out a replica that would run unsafely.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from cds_service.audit.chain import AuditError, load_signer
from cds_service.settings import Settings


def production_problems(settings: Settings, workers: int = 1) -> list[str]:
    """Every reason this configuration is not fit for production (empty: fit)."""
    problems: list[str] = []
    if not settings.auth_required:
        problems.append(
            "TWIN_CDS_AUTH_REQUIRED is false: any caller could use the service and its token"
        )
    if not settings.clients:
        problems.append("TWIN_CDS_CLIENTS is empty: no EHR can call the service")
    for client in settings.clients:
        if not client.fhir_servers:
            problems.append(
                f"CDS client {client.iss}: fhir_servers is empty, so its calls can never "
                "fetch data (the FHIR allowlist of a client must name its servers)"
            )
        for server in client.fhir_servers:
            if urlsplit(server).scheme != "https":
                problems.append(f"CDS client {client.iss}: FHIR server {server} is not https")
    if settings.allow_insecure_loopback_fhir:
        problems.append(
            "TWIN_CDS_ALLOW_INSECURE_LOOPBACK_FHIR is true: plain http to loopback FHIR "
            "servers is for development"
        )
    problems += _signing_key_problems(settings.audit_signing_key_file)
    if urlsplit(settings.public_base_url).scheme != "https":
        problems.append(
            f"TWIN_CDS_PUBLIC_BASE_URL {settings.public_base_url} is not https: card links "
            "and the app's session cookie need TLS"
        )
    if workers > 1 and not settings.database_url:
        problems.append(
            f"{workers} workers without TWIN_CDS_DATABASE_URL: more than one worker needs "
            "PostgreSQL (SQLite serialises every write of every worker on one file lock)"
        )
    return problems


def _signing_key_problems(path: Path | None) -> list[str]:
    if path is None:
        return [
            "TWIN_CDS_AUDIT_SIGNING_KEY_FILE is unset: audit checkpoints would not be "
            "signed, so whoever can write the store could rewrite the trail"
        ]
    try:
        load_signer(path)
    except AuditError as exc:
        return [f"TWIN_CDS_AUDIT_SIGNING_KEY_FILE: {exc}"]
    return []
