"""The simulated EHR's FHIR proxy: reads and searches checked against the bearer token.

A token reads only what its scopes and its patient allow before anything reaches the
upstream server; the upstream's URLs are rewritten so paging stays behind the proxy, and
``_include``/``_revinclude`` cannot smuggle in what the token may not see. The
CapabilityStatement is the upstream's, with SMART's security section.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ehr_sim.state import SimDep, SimulatorConfig, Token
from ehr_sim.web import FHIR_JSON, is_fhir_id, outcome

log = logging.getLogger("twin_cds.simulator")

router = APIRouter()

#: A FHIR resource type name (R4 names are CamelCase ASCII letters).
_FHIR_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
#: Upstream headers worth passing back to the app (body-related ones are recomputed).
_PASSED_HEADERS = ("content-type", "etag", "last-modified")


@router.get("/fhir/metadata")
async def metadata(sim: SimDep) -> Response:
    """The upstream CapabilityStatement, as this server: its URL and SMART security."""
    try:
        response = await sim.client().get(f"{sim.upstream}/metadata", headers={"Accept": FHIR_JSON})
        statement = response.json()
    except (httpx.HTTPError, ValueError):
        return outcome(502, "transient", "the FHIR server is unavailable")
    if response.status_code != 200 or not isinstance(statement, dict):
        return outcome(502, "transient", "the FHIR server is unavailable")
    _smart_capability(statement, sim.config)
    return Response(json.dumps(statement), 200, media_type=FHIR_JSON)


@router.get("/fhir/{path:path}")
async def fhir(sim: SimDep, path: str, request: Request) -> Response:
    """Reads and searches, each checked against the bearer token before it goes upstream."""
    authorization = request.headers.get("authorization", "")
    scheme, _, presented = authorization.partition(" ")
    grant = sim.state.live_token(presented.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        # RFC 6750 §3: say Bearer; add invalid_token when one was presented.
        challenge = 'Bearer error="invalid_token"' if presented else "Bearer"
        return outcome(
            401, "login", "a valid access token is required", {"WWW-Authenticate": challenge}
        )
    params = request.query_params.multi_items()
    refusal = _refusal(grant, path, params)
    if refusal is not None:
        return outcome(
            403,
            "forbidden",
            refusal,
            {"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )
    url = f"{sim.upstream}/{path}"
    if request.url.query:
        url += "?" + request.url.query
    try:
        # handling=strict: an upstream that ignored an unknown search parameter would
        # silently widen a search the patient check above let through.
        response = await sim.client().get(
            url, headers={"Accept": FHIR_JSON, "Prefer": "handling=strict"}
        )
    except httpx.HTTPError as exc:
        log.warning("FHIR proxy: upstream failed (%s)", type(exc).__name__)
        return outcome(502, "transient", "the FHIR server is unavailable")
    headers = {k: v for k in _PASSED_HEADERS if (v := response.headers.get(k)) is not None}
    content = response.content
    if "json" in headers.get("content-type", ""):
        try:
            resource = json.loads(content)
        except ValueError:
            resource = None
        if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
            _rewrite_bundle(resource, sim.upstream, sim.config.fhir_base)
            _filter_bundle(resource, grant)
            content = json.dumps(resource).encode()
    return Response(content, response.status_code, headers=headers)


def _covers(scopes: frozenset[str], level: str, resource_type: str) -> bool:
    return any(f"{level}/{t}.{p}" in scopes for t in (resource_type, "*") for p in ("rs", "read"))


def _in_compartment(resource_type: str, patient: str, params: list[tuple[str, str]]) -> bool:
    """A search that can only match this patient's data.

    Patient searches must be ``_id={patient}``; others must name the patient with
    ``patient={id}`` (or ``Patient/{id}``) or ``subject=Patient/{id}``. Every patient or
    subject parameter must be exactly that (no modifiers, no comma-separated ORs), since
    repeated parameters are ANDed and so can only narrow the search.
    """
    if resource_type == "Patient":
        if any(k.startswith("_id:") for k, _ in params):
            return False  # _id:not=... would match everyone else
        ids = [v for k, v in params if k == "_id"]
        return bool(ids) and all(v == patient for v in ids)
    allowed = {"patient": {patient, f"Patient/{patient}"}, "subject": {f"Patient/{patient}"}}
    named = False
    for key, value in params:
        base = key.split(":")[0]
        if base in allowed:
            if ":" in key or value not in allowed[base]:
                return False
            named = True
    return named


def _refusal(grant: Token, path: str, params: list[tuple[str, str]]) -> str | None:
    """Why this token may not make this request, or None when it may."""
    segments = path.split("/")
    resource_type = segments[0]
    if len(segments) > 2 or _FHIR_TYPE.fullmatch(resource_type) is None:
        return "only reads (Type/id) and type-level searches (Type?...) are proxied"
    if len(segments) == 2 and not is_fhir_id(segments[1]):
        return "not a FHIR resource id"
    if _covers(grant.scopes, "user", resource_type):
        return None
    if not _covers(grant.scopes, "patient", resource_type):
        return f"no granted scope covers {resource_type}"
    if grant.patient is None:
        return "this token has no patient context"
    if len(segments) == 2:
        if resource_type == "Patient" and segments[1] == grant.patient:
            return None
        return "a patient-context token reads only its Patient; search for other resources"
    if not _in_compartment(resource_type, grant.patient, params):
        return "a search must be restricted to the token's patient"
    return None


def _rewrite_url(url: object, upstream: str, public: str) -> object:
    if isinstance(url, str) and (
        url == upstream or url.startswith((upstream + "/", upstream + "?"))
    ):
        return public + url[len(upstream) :]
    return url


def _rewrite_bundle(bundle: dict[str, Any], upstream: str, public: str) -> None:
    """Upstream URLs in a Bundle point at the proxy, so paging goes through it."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and "url" in link:
            link["url"] = _rewrite_url(link["url"], upstream, public)
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict) and "fullUrl" in entry:
            entry["fullUrl"] = _rewrite_url(entry["fullUrl"], upstream, public)


def _filter_bundle(bundle: dict[str, Any], grant: Token) -> None:
    """Drop entries the token may not see (``_include``/``_revinclude`` can add them)."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return

    def visible(entry: object) -> bool:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            return False
        rtype = str(resource.get("resourceType", ""))
        if rtype == "OperationOutcome" or _covers(grant.scopes, "user", rtype):
            return True
        if not _covers(grant.scopes, "patient", rtype):
            return False
        return rtype != "Patient" or resource.get("id") == grant.patient

    bundle["entry"] = [e for e in entries if visible(e)]


def _smart_capability(statement: dict[str, Any], config: SimulatorConfig) -> None:
    """FHIR R4 CapabilityStatement.rest.security for SMART (SMART App Launch 2.x §Conformance)."""
    implementation = statement.get("implementation")
    if isinstance(implementation, dict):
        implementation["url"] = config.fhir_base
    security = {
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "authorize", "valueUri": f"{config.issuer}/authorize"},
                    {"url": "token", "valueUri": f"{config.issuer}/token"},
                ],
            }
        ],
    }
    for rest in statement.get("rest") or []:
        if isinstance(rest, dict) and rest.get("mode") == "server":
            rest["security"] = security
