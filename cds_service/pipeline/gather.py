"""Gather the data a service needs: prefetch first, the FHIR server for the rest.

CDS Hooks 2.0 prefetch semantics: a key that is absent was not satisfied and may
be fetched; a key whose value is ``null`` means the EHR found no data; an
OperationOutcome means the EHR failed to fetch it, so we try ourselves. Fetching
happens only when the request carries both ``fhirServer`` and ``fhirAuthorization``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import httpx

from cds_service.errors import DataUnavailable, FhirServerNotAllowed, TooMuchData
from cds_service.http.hooks import HookRequest
from cds_service.ops.metrics import FHIR_BUDGET_OVERRUNS, server_label
from cds_service.pipeline.fhir_client import (
    FhirClient,
    SearchResult,
    check_fhir_server,
    entry_resources,
)
from cds_service.services.catalog import ServiceDefinition
from cds_service.settings import Settings

log = logging.getLogger("twin_cds.prefetch")

KeyOrigin = Literal["prefetch", "fetched", "no-data", "unavailable"]

_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
#: FHIR R4 id: [A-Za-z0-9\-\.]{1,64} (https://hl7.org/fhir/R4/datatypes.html#id).
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class PrefetchKeyReport:
    """Where one prefetch key's data came from, and why not when it did not come."""

    key: str
    origin: KeyOrigin
    resources: int
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class GatheredData:
    """Every resource gathered for one hook call, de-duplicated by type and id."""

    resources: tuple[dict[str, Any], ...]
    keys: tuple[PrefetchKeyReport, ...]

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(f"{k.key}: {k.problem}" for k in self.keys if k.problem)


def render_template(template: str, request: HookRequest) -> str | None:
    """Fill ``{{context.x}}`` and user tokens; None when a token has no value."""
    context = request.context.model_dump()
    user_type, _, user_id = (request.context.userId or "").partition("/")
    user_tokens = {
        "userPractitionerId": user_id if user_type == "Practitioner" else None,
        "userPractitionerRoleId": user_id if user_type == "PractitionerRole" else None,
        "userPatientId": user_id if user_type == "Patient" else None,
        "userRelatedPersonId": user_id if user_type == "RelatedPerson" else None,
    }
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        value = (
            context.get(name.removeprefix("context."))
            if name.startswith("context.")
            else user_tokens.get(name)
        )
        if value is None or not _FHIR_ID.fullmatch(str(value)) or str(value) in {".", ".."}:
            # Not a FHIR id: never put it in a URL that carries the EHR's token (no path
            # traversal like "../admin", no injected search parameters).
            missing = True
            return ""
        return str(value)

    rendered = _TOKEN.sub(fill, template)
    return None if missing else rendered


def _resources_of(value: dict[str, Any]) -> list[dict[str, Any]]:
    return entry_resources(value) if value.get("resourceType") == "Bundle" else [value]


async def gather(
    request: HookRequest,
    service: ServiceDefinition,
    settings: Settings,
    http: httpx.AsyncClient,
    allowlist: tuple[str, ...] | None = None,
) -> GatheredData:
    """Collect the service's data; raise DataUnavailable (412) without a Patient."""
    prefetch = request.prefetch or {}
    reports: dict[str, PrefetchKeyReport] = {}
    collected: dict[str, list[dict[str, Any]]] = {}
    to_fetch: dict[str, str] = {}

    for key, template in service.prefetch.items():
        if key in prefetch and prefetch[key] is None:
            reports[key] = PrefetchKeyReport(key, "no-data", 0)
            continue
        value = prefetch.get(key)
        if isinstance(value, dict) and value.get("resourceType") not in (
            None,
            "OperationOutcome",
        ):
            collected[key] = _resources_of(value)
            reports[key] = PrefetchKeyReport(key, "prefetch", len(collected[key]))
            continue
        query = render_template(template, request)
        if query is None:
            reports[key] = PrefetchKeyReport(
                key, "unavailable", 0, "a template token had no value or was not a FHIR id"
            )
            continue
        to_fetch[key] = query

    # Prefetch keys we do not know are still data the EHR chose to send.
    for key, value in prefetch.items():
        if key not in service.prefetch and isinstance(value, dict):
            collected[key] = _resources_of(value)
            reports[key] = PrefetchKeyReport(key, "prefetch", len(collected[key]))

    _check_entry_cap(collected, settings.max_entries_per_call)
    if to_fetch:
        allowed = settings.fhir_server_allowlist if allowlist is None else allowlist
        await _fetch_missing(request, settings, http, allowed, to_fetch, collected, reports)

    resources = _deduplicate(chain.from_iterable(collected.values()))
    if not any(r.get("resourceType") == "Patient" for r in resources):
        problems = "; ".join(f"{r.key}: {r.problem}" for r in reports.values() if r.problem)
        raise DataUnavailable(
            "the Patient resource could not be obtained" + (f" ({problems})" if problems else "")
        )
    return GatheredData(tuple(resources), tuple(reports.values()))


async def _fetch_missing(
    request: HookRequest,
    settings: Settings,
    http: httpx.AsyncClient,
    allowlist: tuple[str, ...],
    to_fetch: dict[str, str],
    collected: dict[str, list[dict[str, Any]]],
    reports: dict[str, PrefetchKeyReport],
) -> None:
    if request.fhirServer is None or request.fhirAuthorization is None:
        for key in to_fetch:
            reports[key] = PrefetchKeyReport(
                key, "unavailable", 0, "not in prefetch and no fhirServer/fhirAuthorization"
            )
        return
    try:
        base = check_fhir_server(
            str(request.fhirServer),
            allowlist,
            allow_insecure_loopback=settings.allow_insecure_loopback_fhir,
        )
    except FhirServerNotAllowed as exc:
        # Never contacted; what came in prefetch may still be enough for an answer.
        for key in to_fetch:
            reports[key] = PrefetchKeyReport(key, "unavailable", 0, str(exc))
        return
    client = FhirClient(
        http,
        base,
        request.fhirAuthorization.access_token,
        max_pages=settings.fhir_max_pages,
        max_resources=settings.max_entries_per_call,
    )
    # The searches are independent: run them at once so the hook waits for the slowest,
    # and never longer than the budget: what has not come by then is reported missing.
    tasks = {key: asyncio.create_task(client.query(query)) for key, query in to_fetch.items()}
    _, pending = await asyncio.wait(tasks.values(), timeout=settings.fhir_budget_ms / 1000)
    if pending:
        FHIR_BUDGET_OVERRUNS.labels(server_label(base)).inc()
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for key, task in tasks.items():
        if task in pending:
            reports[key] = PrefetchKeyReport(
                key,
                "unavailable",
                0,
                f"not fetched within the {settings.fhir_budget_ms:.0f} ms budget",
            )
            continue
        failure = task.exception()
        result: SearchResult | BaseException = failure if failure is not None else task.result()
        if isinstance(result, DataUnavailable):
            reports[key] = PrefetchKeyReport(key, "unavailable", 0, str(result))
        elif isinstance(result, BaseException):
            # A server can send anything; a fault we did not foresee costs this key,
            # never the call. The trace goes to the operator's log, not to the caller.
            log.error("fetching %s failed", key, exc_info=result)
            reports[key] = PrefetchKeyReport(
                key, "unavailable", 0, f"unexpected {type(result).__name__} while fetching"
            )
        else:
            collected[key] = list(result.resources)
            problem = (
                f"stopped after {result.pages} pages, {len(result.resources)} entries "
                f"(at most {settings.fhir_max_pages} pages and "
                f"{settings.max_entries_per_call} entries per call)"
                if result.truncated
                else None
            )
            reports[key] = PrefetchKeyReport(key, "fetched", len(result.resources), problem)


def _check_entry_cap(collected: dict[str, list[dict[str, Any]]], cap: int) -> None:
    """Refuse a prefetch of more entries than one call may read, before any is parsed:
    200,000 minimal Patients held the event loop for 14 s before this cap."""
    total = sum(len(rs) for rs in collected.values())
    if total > cap:
        raise TooMuchData(
            f"prefetch holds {total} FHIR entries; at most {cap} are read per call "
            "(max_entries_per_call)"
        )


def _deduplicate(resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for r in resources:
        rid = r.get("id")
        if isinstance(rid, str):
            key = (str(r.get("resourceType")), rid)
            if key in seen:
                continue
            seen.add(key)
        out.append(r)
    return out
