"""The launch patient's data as the app's panels use them: fetched from the EHR once a
minute per session, turned into the twin a hook call would build (same data, same
store key, same version), and the models' runs on it, computed once per fetch and day.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.pipeline.fhir_client import FhirClient, FhirFetchError
from cds_service.pipeline.run import Runtime
from cds_service.services.cardio_renal import CardioRenalAssessments
from cds_service.services.catalog import LOINC, RISK_OBSERVATION_LOINC
from smart_app.context import AppSession
from smart_app.errors import EhrUnavailable, NoSession
from smart_app.launch import twin_scope
from smart_app.risk_view import risk_assessments
from smart_app.sessions import SessionStore
from twin_engine import FeatureSet, build_twin_from_fhir, derive_features
from twin_engine.clinical.state import ClinicalState, clinical_state
from twin_engine.codes import QUANTITY_LOINC
from twin_engine.errors import IngestError, TwinNotFoundError
from twin_engine.store import store_key
from twin_engine.twin import Twin

#: Fetched FHIR is reused for a minute within one session: the what-if and dose
#: simulator redraw many times on the same data without re-reading the EHR each time.
FETCH_CACHE_S = 60.0
#: What the dose simulator reads beyond the risk services' query: levels and weight.
_VANCOMYCIN_LOINC = (*QUANTITY_LOINC["vancomycin"], *QUANTITY_LOINC["weight"])
#: Resource types the risk services' prefetch brings (Observations by code, below).
_RISK_TYPES = frozenset({"Patient", "Condition", "MedicationRequest", "Procedure"})


@dataclass(frozen=True, slots=True)
class PatientData:
    resources: tuple[dict[str, Any], ...]
    patient: dict[str, Any] | None
    #: What could not be read in full (a search cut at the page limit), said, not hidden.
    problems: tuple[str, ...] = ()


def patient_queries(pid: str) -> tuple[str, ...]:
    """The reads and searches the app sends for its patient (values unencoded: the FHIR
    client percent-encodes them)."""
    wanted = sorted({*RISK_OBSERVATION_LOINC, *_VANCOMYCIN_LOINC})
    codes = ",".join(f"{LOINC}|{c}" for c in wanted)
    return (
        f"Patient/{pid}",
        f"Observation?patient={pid}&code={codes}",
        f"Condition?patient={pid}",
        f"MedicationRequest?patient={pid}",
        f"MedicationAdministration?patient={pid}",
        f"Procedure?patient={pid}",
    )


@dataclass(slots=True)
class PatientCache:
    """Per session: the fetched data (until their deadline) and what was computed from them."""

    fetched: dict[str, tuple[float, PatientData]] = field(default_factory=dict)
    computed: dict[str, Computed] = field(default_factory=dict)


async def fetch(
    rt: Runtime, sessions: SessionStore, cache: PatientCache, s: AppSession
) -> PatientData:
    """The patient's data from the EHR, or the same as a minute ago."""
    now = time.monotonic()
    hit = cache.fetched.get(s.session_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    client = FhirClient(
        rt.http,
        s.iss,
        s.access_token,
        max_pages=rt.settings.fhir_max_pages,
        max_resources=rt.settings.max_entries_per_call,
    )
    queries = patient_queries(s.patient)
    try:
        results = await asyncio.gather(*(client.query(q) for q in queries))
    except FhirFetchError as exc:
        if exc.status in (401, 403):
            # The EHR no longer honours the token (expired, revoked): the session is over.
            sessions.delete(s.session_id)
            raise NoSession("the EHR no longer accepts this session; launch the app again") from exc
        raise EhrUnavailable(f"the EHR's FHIR server: {exc}") from exc
    resources = tuple(r for result in results for r in result.resources)
    patient = next((r for r in results[0].resources if r.get("resourceType") == "Patient"), None)
    problems = tuple(
        f"{q.split('?')[0]}: only the first {result.pages} pages were read"
        for q, result in zip(queries, results, strict=True)
        if result.truncated
    )
    data = PatientData(resources, patient, problems)
    for key in [k for k, (until, _) in cache.fetched.items() if until <= now]:
        del cache.fetched[key]
        cache.computed.pop(key, None)
    cache.fetched[s.session_id] = (now + FETCH_CACHE_S, data)
    return data


@dataclass(frozen=True, slots=True)
class TwinContext:
    twin: Twin
    version: int
    content_hash: str
    latest_version: int
    requested_version: int | None
    note: str | None
    data: PatientData


def risk_query_resources(resources: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """What the risk services' prefetch would have brought: the twin they build.

    The same data then make the same twin (and version) here as in a hook call; the
    dose simulator's extra reads (levels, weight, administrations) stay out of it.
    """
    risk_codes = frozenset(RISK_OBSERVATION_LOINC)

    def wanted(r: dict[str, Any]) -> bool:
        kind = r.get("resourceType")
        if kind in _RISK_TYPES:
            return True
        if kind != "Observation":
            return False
        codings = (r.get("code") or {}).get("coding") or []
        return any(
            isinstance(c, dict) and c.get("system") == LOINC and c.get("code") in risk_codes
            for c in codings
        )

    return [r for r in resources if wanted(r)]


def twin_context(rt: Runtime, s: AppSession, data: PatientData) -> TwinContext:
    """The launch's twin: the version the card named (appContext), else the latest."""
    try:
        fresh = build_twin_from_fhir(risk_query_resources(data.resources), patient_id=s.patient)
    except IngestError as exc:
        raise EhrUnavailable(f"the patient's record could not be read: {exc}") from exc
    key = store_key(twin_scope(rt.settings, s.iss), s.patient)
    latest = rt.twins.save(fresh, key=key)
    requested = None
    ctx = s.app_context or {}
    if isinstance(ctx.get("twinVersion"), int) and ctx.get("patient") in (None, s.patient):
        requested = int(ctx["twinVersion"])
    if requested is None or requested == latest.version:
        return TwinContext(
            fresh, latest.version, latest.content_hash, latest.version, requested, None, data
        )
    try:
        stored = rt.twins.load(key or s.patient, requested)
    except TwinNotFoundError:
        note = f"The card's twin version {requested} is not stored; showing the latest."
        return TwinContext(
            fresh, latest.version, latest.content_hash, latest.version, requested, note, data
        )
    note = (
        f"Showing twin version {requested}, the one the card was computed on; "
        f"newer data make version {latest.version}."
    )
    return TwinContext(
        stored.twin(),
        requested,
        stored.version.content_hash,
        latest.version,
        requested,
        note,
        data,
    )


@dataclass(frozen=True, slots=True)
class Computed:
    """What one fetch of the patient's data gives the panels: the twin (saved once),
    its features as of today, and the models' runs with their explanations."""

    data: PatientData
    today: date
    twin: TwinContext
    features: FeatureSet
    runs: CardioRenalAssessments
    state: ClinicalState


async def compute(
    rt: Runtime, sessions: SessionStore, cache: PatientCache, s: AppSession
) -> Computed:
    """Built once per fetch and day, not once per call: a what-if redraw reuses the
    twin and the runs (and their Shapley values) the risk panel already computed."""
    data = await fetch(rt, sessions, cache, s)
    today = rt.today()
    hit = cache.computed.get(s.session_id)
    if hit is not None and hit.data is data and hit.today == today:
        return hit
    ctx = twin_context(rt, s, data)
    features = derive_features(ctx.twin, today)
    runs = risk_assessments(rt.registry, ctx.twin, features, kfre_model=rt.settings.kfre_model)
    computed = Computed(data, today, ctx, features, runs, clinical_state(ctx.twin, features))
    cache.computed[s.session_id] = computed
    return computed
