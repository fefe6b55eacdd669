"""FHIR Bulk Data Access (``$export``) client with SMART Backend Services authorisation.

- Kick-off: ``GET [base]/Patient/$export`` or ``[base]/Group/{id}/$export`` with
  ``Prefer: respond-async`` and ``Accept: application/fhir+json``; ``_type`` names the
  resource types the twins read and ``_since`` asks only for what changed since an
  earlier export's ``transactionTime`` (FHIR Bulk Data Access IG v2.0.0, "Bulk Data
  Kick-off Request"). The server answers 202 with ``Content-Location``: the status URL.
- Status: polled until 200 (the manifest); 202 means in progress, and the next poll
  waits the ``Retry-After`` the server sent (seconds or an HTTP date; IG "Bulk Data
  Status Request"), never less than a floor and never beyond the deadline. 404/410:
  the job expired or was deleted; 4xx/5xx with an OperationOutcome: the job failed.
- Output: each ``output`` file is streamed to disk as NDJSON (one resource type per
  file, as the server wrote it); ``error`` files (OperationOutcome NDJSON) are kept
  and their diagnostics counted. Only URLs on the FHIR server's own origin are
  fetched, so the access token never leaves for another host. The job is deleted
  on the server after download (the IG's "Delete a Bulk Data Request").
- Authorisation (SMART App Launch 2.x, "Backend Services"): a ``client_credentials``
  grant authenticated by a ``private_key_jwt`` assertion (RS384 or ES384) signed by
  the configured key, posted to the token endpoint discovered from
  ``[base]/.well-known/smart-configuration``; the token is renewed before it expires.
  Tokens are never logged.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from cds_service.errors import PopulationError

log = logging.getLogger("twin_cds.population.bulk")

#: The resource types a twin reads (twin_engine.fhir.read), asked for by ``_type``.
TWIN_RESOURCE_TYPES: Final = (
    "Patient",
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "Medication",
)
#: SMART v2 system scope, read and search only. Wildcard rather than one scope per type:
#: the status and file URLs of an export name no resource type, and servers check them
#: against ``*`` (sekmet does; the Bulk Data IG's own examples ask for system/*.rs).
#: ``--scope`` narrows it where the EHR allows.
DEFAULT_SCOPE: Final = "system/*.rs"
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART Backend Services: the assertion's exp is at most five minutes ahead.
ASSERTION_LIFETIME_S: Final = 300
#: Polling when the server sends no usable Retry-After: start here, double, up to the cap.
DEFAULT_POLL_S: Final = 1.0
MAX_POLL_S: Final = 60.0
#: Renew the access token this long before it expires.
TOKEN_RENEW_MARGIN_S: Final = 30.0


class BulkExportError(PopulationError):
    """An export that could not be done, naming the step and what the server said."""


class BulkJobExpired(BulkExportError):
    """The export job is gone (404/410 on its status URL): expired or deleted."""


class BulkAuthError(BulkExportError):
    """The token endpoint refused the client (or could not be found)."""


@dataclass(frozen=True, slots=True)
class BackendServicesAuth:
    """A SMART Backend Services client: its id, key (PEM) and signing algorithm."""

    client_id: str
    private_key_pem: bytes
    algorithm: Literal["RS384", "ES384"] = "ES384"
    kid: str | None = None
    scope: str = DEFAULT_SCOPE
    token_url: str | None = None  # discovered from smart-configuration when None

    @classmethod
    def from_file(
        cls,
        client_id: str,
        key_file: Path,
        algorithm: Literal["RS384", "ES384"] = "ES384",
        kid: str | None = None,
        scope: str = DEFAULT_SCOPE,
    ) -> BackendServicesAuth:
        pem = key_file.read_bytes()
        load_pem_private_key(pem, password=None)  # fail now, naming the file, not at first use
        return cls(client_id, pem, algorithm, kid, scope)


@dataclass(frozen=True, slots=True)
class ExportedFile:
    type: str
    path: Path
    lines: int


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What one export produced: where the files are, and what the server said."""

    directory: Path
    transaction_time: str
    request: str
    files: tuple[ExportedFile, ...]
    error_files: tuple[ExportedFile, ...]
    errors: tuple[str, ...]
    polls: int
    waited_s: float = 0.0
    retry_after_s: tuple[float, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "transactionTime": self.transaction_time,
            "request": self.request,
            "files": [{"type": f.type, "lines": f.lines} for f in self.files],
            "errorFiles": len(self.error_files),
            "errors": list(self.errors),
            "polls": self.polls,
        }


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP-date, RFC 9110 10.2.3), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _outcome_text(response: httpx.Response) -> str:
    """The OperationOutcome's diagnostics (or the body's start), for an error message."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        issues = body.get("issue") or []
        texts = [
            str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
            for i in issues
            if isinstance(i, dict)
        ]
        if texts:
            return "; ".join(texts)[:500]
        if "error" in body:
            return f"{body.get('error')}: {body.get('error_description', '')}"[:500]
    return response.text[:200]


class BulkExportClient:
    """One FHIR server's ``$export``, from kick-off to files on disk."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: BackendServicesAuth | None = None,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        min_poll_s: float = 0.05,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = urlsplit(self.base_url)[:2]
        self._auth = auth
        self._http = http or httpx.Client(timeout=60.0)
        self._sleep = sleep
        self._clock = clock
        self._min_poll_s = min_poll_s
        self._token: str | None = None
        self._token_expires = 0.0

    # -- authorisation

    def _token_url(self) -> str:
        assert self._auth is not None  # noqa: S101 - only called with auth
        if self._auth.token_url:
            return self._auth.token_url
        url = f"{self.base_url}/.well-known/smart-configuration"
        r = self._http.get(url, headers={"Accept": "application/json"})
        if r.status_code != 200:
            raise BulkAuthError(f"{url}: HTTP {r.status_code}; cannot find the token endpoint")
        endpoint = r.json().get("token_endpoint")
        if not isinstance(endpoint, str):
            raise BulkAuthError(f"{url} names no token_endpoint")
        return endpoint

    def _access_token(self) -> str | None:
        if self._auth is None:
            return None
        if self._token is not None and self._clock() < self._token_expires - TOKEN_RENEW_MARGIN_S:
            return self._token
        token_url = self._token_url()
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": self._auth.client_id,
                "sub": self._auth.client_id,
                "aud": token_url,
                "iat": now,
                "exp": now + ASSERTION_LIFETIME_S,
                "jti": str(uuid.uuid4()),
            },
            load_pem_private_key(self._auth.private_key_pem, password=None),  # type: ignore[arg-type]
            algorithm=self._auth.algorithm,
            headers={"kid": self._auth.kid} if self._auth.kid else None,
        )
        r = self._http.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": self._auth.scope,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
            },
            headers={"Accept": "application/json"},
        )
        if r.status_code != 200:
            raise BulkAuthError(
                f"token endpoint {token_url}: HTTP {r.status_code}: {_outcome_text(r)}"
            )
        body = r.json()
        token = body.get("access_token")
        if not isinstance(token, str):
            raise BulkAuthError(f"token endpoint {token_url} returned no access_token")
        self._token = token
        self._token_expires = self._clock() + float(body.get("expires_in", 300))
        return token

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        token = self._access_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _check_origin(self, url: str, what: str) -> None:
        if urlsplit(url)[:2] != self._origin:
            raise BulkExportError(
                f"{what} {url} is not on the FHIR server's origin {self.base_url}; not fetched"
            )

    # -- the export

    def kick_off(
        self,
        *,
        group: str | None = None,
        since: str | None = None,
        types: tuple[str, ...] = TWIN_RESOURCE_TYPES,
        extra_params: dict[str, str] | None = None,
    ) -> str:
        """Start an export; return its status URL (``extra_params``: more kick-off parameters)."""
        path = f"Group/{group}/$export" if group else "Patient/$export"
        params: dict[str, str] = {"_outputFormat": "application/fhir+ndjson"}
        if types:
            params["_type"] = ",".join(types)
        if since:
            params["_since"] = since
        params.update(extra_params or {})
        url = f"{self.base_url}/{path}"
        headers = {**self._headers("application/fhir+json"), "Prefer": "respond-async"}
        r = self._http.get(url, params=params, headers=headers)
        if r.status_code != 202:
            raise BulkExportError(
                f"$export kick-off at {url}: HTTP {r.status_code} (expected 202): "
                + _outcome_text(r)
            )
        location = r.headers.get("Content-Location")
        if not location:
            raise BulkExportError(f"$export kick-off at {url}: 202 without Content-Location")
        self._check_origin(location, "status URL")
        return str(location)

    def wait(
        self, status_url: str, *, timeout_s: float = 3600.0
    ) -> tuple[dict[str, Any], int, tuple[float, ...]]:
        """Poll the status URL until the manifest; return it, the polls and the waits."""
        deadline = self._clock() + timeout_s
        polls = 0
        waits: list[float] = []
        backoff = DEFAULT_POLL_S
        while True:
            polls += 1
            r = self._http.get(status_url, headers=self._headers("application/json"))
            if r.status_code == 200:
                manifest = r.json()
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise BulkExportError(f"export status {status_url}: 200 without a manifest")
                return manifest, polls, tuple(waits)
            if r.status_code in (404, 410):
                raise BulkJobExpired(
                    f"export job {status_url} is gone (HTTP {r.status_code}): expired or deleted "
                    "on the server; start a new export"
                )
            if r.status_code not in (202, 429):
                raise BulkExportError(
                    f"export job {status_url} failed: HTTP {r.status_code}: {_outcome_text(r)}"
                )
            told = retry_after_seconds(r.headers.get("Retry-After"))
            if told is None:
                delay = backoff
                backoff = min(MAX_POLL_S, backoff * 2)
            else:
                delay = told
            delay = max(self._min_poll_s, delay)
            remaining = deadline - self._clock()
            if remaining <= 0 or delay > remaining:
                raise BulkExportError(
                    f"export job {status_url} not complete within {timeout_s:.0f} s "
                    f"(last progress: {r.headers.get('X-Progress', 'unknown')})"
                )
            log.info(
                "export in progress (%s); next poll in %.1f s", r.headers.get("X-Progress"), delay
            )
            waits.append(delay)
            self._sleep(delay)

    def _download(self, item: dict[str, Any], directory: Path, index: int) -> ExportedFile:
        url = item.get("url")
        rtype = str(item.get("type") or "unknown")
        if not isinstance(url, str):
            raise BulkExportError(f"manifest entry {index} ({rtype}) has no url")
        self._check_origin(url, "file URL")
        path = directory / f"{rtype}.{index:03d}.ndjson"
        lines = 0
        with self._http.stream("GET", url, headers=self._headers("application/fhir+ndjson")) as r:
            if r.status_code != 200:
                r.read()
                if r.status_code in (404, 410):
                    raise BulkJobExpired(
                        f"export file {url} is gone (HTTP {r.status_code}): the export expired"
                    )
                raise BulkExportError(
                    f"export file {url}: HTTP {r.status_code}: {_outcome_text(r)}"
                )
            tmp = path.with_suffix(".part")
            with tmp.open("wb") as out:
                for chunk in r.iter_bytes():
                    lines += chunk.count(b"\n")
                    out.write(chunk)
            tmp.replace(path)
        return ExportedFile(rtype, path, lines)

    def export(
        self,
        directory: Path,
        *,
        group: str | None = None,
        since: str | None = None,
        timeout_s: float = 3600.0,
        extra_params: dict[str, str] | None = None,
    ) -> ExportResult:
        """Kick off, wait, download every file (and the error files), delete the job."""
        status_url = self.kick_off(group=group, since=since, extra_params=extra_params)
        manifest, polls, waits = self.wait(status_url, timeout_s=timeout_s)
        directory.mkdir(parents=True, exist_ok=True)
        files = tuple(
            self._download(item, directory, i) for i, item in enumerate(manifest["output"])
        )
        error_files: list[ExportedFile] = []
        errors: list[str] = []
        # Error files (OperationOutcome) beside, not inside, the data directory: the
        # population build reads every NDJSON file in it as patient data.
        errors_dir = directory.parent / f"{directory.name}-errors"
        for i, item in enumerate(manifest.get("error") or []):
            errors_dir.mkdir(parents=True, exist_ok=True)
            f = self._download(item, errors_dir, i)
            error_files.append(f)
            errors.extend(_error_diagnostics(f.path))
        # The files are ours now; the server may free them (IG: client deletes when done).
        try:
            gone = self._http.delete(status_url, headers=self._headers("application/json"))
            if gone.status_code >= 300:
                log.warning("export job %s not deleted: HTTP %s", status_url, gone.status_code)
        except httpx.HTTPError as exc:
            log.warning("could not delete export job %s: %s", status_url, type(exc).__name__)
        return ExportResult(
            directory=directory,
            transaction_time=str(manifest.get("transactionTime") or ""),
            request=str(manifest.get("request") or ""),
            files=files,
            error_files=tuple(error_files),
            errors=tuple(errors),
            polls=polls,
            waited_s=sum(waits),
            retry_after_s=waits,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BulkExportClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_diagnostics(path: Path) -> list[str]:
    """One line per issue of an export's error file (OperationOutcome NDJSON)."""
    out: list[str] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                outcome = orjson.loads(line)
            except orjson.JSONDecodeError:
                out.append(f"{path.name} line {number}: not JSON")
                continue
            for issue in outcome.get("issue") or [] if isinstance(outcome, dict) else []:
                if isinstance(issue, dict):
                    out.append(
                        f"{issue.get('severity', '?')}: "
                        f"{issue.get('diagnostics') or issue.get('code') or 'no diagnostics'}"
                    )
    return out
