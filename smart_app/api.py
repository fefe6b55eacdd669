"""The clinician app's JSON API (``/app/api/...``), behind the server-side session.

Every call needs the session cookie set at the end of the SMART launch; the data come
from the EHR's FHIR server with the token that session holds (never sent to the
browser), for the launch's patient only. The twin is built and stored exactly as a
hook call builds and stores it (same store key: tenant or issuer, then patient), so a
card's ``appContext.twinVersion`` names a version the app can open.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from cds_service.pipeline.fhir_client import FhirClient, FhirFetchError
from cds_service.pipeline.run import Runtime
from cds_service.services.cardio_renal import CardioRenalAssessments
from cds_service.services.catalog import LOINC, RISK_OBSERVATION_LOINC
from cds_service.services.vancomycin import MAX_DRAFT_DOSE_MG, MAX_DRAFT_INTERVAL_H
from smart_app import views
from smart_app.embedding import COOKIE
from smart_app.launch import twin_scope
from smart_app.refresh import refresh_due, refresh_session
from smart_app.sessions import SessionStore
from twin_engine import FeatureSet, build_twin_from_fhir, derive_features
from twin_engine.clinical.state import ClinicalState, clinical_state
from twin_engine.codes import QUANTITY_LOINC
from twin_engine.errors import IngestError, TwinNotFoundError
from twin_engine.pk.errors import DosingError
from twin_engine.pk.regimen import MAX_DOSE_MG, MAX_RATE_MG_H
from twin_engine.pk.types import Regimen
from twin_engine.store import store_key
from twin_engine.twin import Twin

router = APIRouter(prefix="/app/api", tags=["clinician app"])

#: Fetched FHIR is reused for a minute within one session: the what-if and dose
#: simulator redraw many times on the same data without re-reading the EHR each time.
FETCH_CACHE_S = 60.0
#: What the dose simulator reads beyond the risk services' query: levels and weight.
_VANCOMYCIN_LOINC = (*QUANTITY_LOINC["vancomycin"], *QUANTITY_LOINC["weight"])
#: Resource types the risk services' prefetch brings (Observations by code, below).
_RISK_TYPES = frozenset({"Patient", "Condition", "MedicationRequest", "Procedure"})


@dataclass(frozen=True, slots=True)
class AppSession:
    """The launch's context; the token stays here, on the server."""

    session_id: str
    iss: str
    access_token: str
    patient: str
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    style: dict[str, str]
    user: str | None
    app_context: dict[str, Any] | None
    expires_at: float


async def require_session(request: Request) -> AppSession:
    store: SessionStore = request.app.state.app_sessions
    session_id = request.cookies.get(COOKIE)
    data = store.get(session_id, "active")
    if data is not None and session_id is not None and refresh_due(data, time.time()):
        data = await refresh_session(request, session_id, data)
    if data is None or session_id is None:
        raise HTTPException(401, "no app session; launch the app from the EHR")
    return AppSession(
        session_id=session_id,
        iss=data["iss"],
        access_token=data["access_token"],
        patient=data["patient"],
        encounter=data.get("encounter"),
        need_patient_banner=bool(data.get("need_patient_banner", True)),
        smart_style_url=data.get("smart_style_url"),
        style=data.get("style") or {},
        user=data.get("user"),
        app_context=data.get("app_context"),
        expires_at=float(data["expires_at"]),
    )


SessionDep = Annotated[AppSession, Depends(require_session)]


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


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


async def _fetch(request: Request, s: AppSession) -> PatientData:
    cache: dict[str, tuple[float, PatientData]] = request.app.state.app_fetch_cache
    now = time.monotonic()
    hit = cache.get(s.session_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    rt = _runtime(request)
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
            request.app.state.app_sessions.delete(s.session_id)
            raise HTTPException(
                401, "the EHR no longer accepts this session; launch the app again"
            ) from exc
        raise HTTPException(502, f"the EHR's FHIR server: {exc}") from exc
    resources = tuple(r for result in results for r in result.resources)
    patient = next((r for r in results[0].resources if r.get("resourceType") == "Patient"), None)
    problems = tuple(
        f"{q.split('?')[0]}: only the first {result.pages} pages were read"
        for q, result in zip(queries, results, strict=True)
        if result.truncated
    )
    data = PatientData(resources, patient, problems)
    views_cache: dict[str, Computed] = request.app.state.app_view_cache
    for key in [k for k, (until, _) in cache.items() if until <= now]:
        del cache[key]
        views_cache.pop(key, None)
    cache[s.session_id] = (now + FETCH_CACHE_S, data)
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


def _risk_query_resources(resources: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
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


def _twin(rt: Runtime, s: AppSession, data: PatientData) -> TwinContext:
    """The launch's twin: the version the card named (appContext), else the latest."""
    try:
        fresh = build_twin_from_fhir(_risk_query_resources(data.resources), patient_id=s.patient)
    except IngestError as exc:
        raise HTTPException(502, f"the patient's record could not be read: {exc}") from exc
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


async def _computed(request: Request, s: AppSession) -> Computed:
    """Built once per fetch and day, not once per call: a what-if redraw reuses the
    twin and the runs (and their Shapley values) the risk panel already computed."""
    rt = _runtime(request)
    data = await _fetch(request, s)
    cache: dict[str, Computed] = request.app.state.app_view_cache
    today = rt.today()
    hit = cache.get(s.session_id)
    if hit is not None and hit.data is data and hit.today == today:
        return hit
    ctx = _twin(rt, s, data)
    features = derive_features(ctx.twin, today)
    runs = views.risk_assessments(
        rt.registry, ctx.twin, features, kfre_model=rt.settings.kfre_model
    )
    computed = Computed(data, today, ctx, features, runs, clinical_state(ctx.twin, features))
    cache[s.session_id] = computed
    return computed


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/session")
async def session_info(s: SessionDep) -> dict[str, Any]:
    """The launch context, without the token."""
    return {
        "patient": s.patient,
        "encounter": s.encounter,
        "user": s.user,
        "need_patient_banner": s.need_patient_banner,
        "smart_style_url": s.smart_style_url,
        # The EHR's style, checked on the server (smart_app.style); the page applies it.
        "style": s.style,
        "app_context": s.app_context,
        "expires_at": datetime.fromtimestamp(s.expires_at, UTC).isoformat(),
    }


@router.get("/twin")
async def twin_view(request: Request, s: SessionDep) -> dict[str, Any]:
    computed = await _computed(request, s)
    ctx = computed.twin
    return {
        "patient": views.banner(ctx.data.patient, ctx.twin, _now()),
        "twin": {
            "version": ctx.version,
            "content_hash": ctx.content_hash,
            "latest_version": ctx.latest_version,
            "requested_version": ctx.requested_version,
            "as_of": computed.today.isoformat(),
            "note": ctx.note,
        },
        "timelines": views.timelines(ctx.twin, computed.state),
        "clinical_state": views.clinical_state_view(computed.state),
        "issues": [*ctx.data.problems, *views.issues(ctx.twin)],
    }


@router.get("/risk")
async def risk(request: Request, s: SessionDep) -> dict[str, Any]:
    c = await _computed(request, s)
    return views.risk_view(c.runs, c.twin.version, c.features.as_of)


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statin: Literal["none", "moderate", "high"] = "none"
    #: Project bounds around the targets offered (120-140 mm Hg), so the per-10 mm Hg
    #: effect (Ettehad 2016) is never extrapolated far from what the trials achieved.
    sbp_target_mm_hg: float | None = Field(default=None, ge=110, le=150)


def _json_only(request: Request) -> None:
    # A form post from another site cannot send application/json without a preflight,
    # which we do not allow for the app: with SameSite=Lax, this closes CSRF.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send application/json")


@router.get("/whatif")
async def whatif_options(request: Request, s: SessionDep) -> dict[str, Any]:
    c = await _computed(request, s)
    return views.whatif_options(c.runs, c.features)


@router.post("/whatif", dependencies=[Depends(_json_only)])
async def whatif(request: Request, s: SessionDep, body: WhatIfRequest) -> dict[str, Any]:
    c = await _computed(request, s)
    try:
        return views.whatif(c.runs, c.features, body.statin, body.sbp_target_mm_hg)
    except views.WhatIfRefused as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/vancomycin")
async def vancomycin(request: Request, s: SessionDep) -> dict[str, Any]:
    rt = _runtime(request)
    data = await _fetch(request, s)
    return views.vancomycin_view(data.resources, _now(), rt.settings.vancomycin_model)


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The bounds the dosing service reads a drafted order within (the same regimen
    #: must be answerable by both): up to 4 g, up to a week between doses.
    dose_mg: float = Field(gt=0, le=MAX_DRAFT_DOSE_MG)
    #: From q4h (project choice: no vancomycin regimen doses more often) to a week.
    interval_h: float = Field(ge=4, le=MAX_DRAFT_INTERVAL_H)
    #: At least 1 h (vancomycin label: over >= 60 min).
    infusion_h: float = Field(ge=1, le=24)
    #: A first, larger dose: at most 3 g (Rybak 2020 consensus loading-dose ceiling).
    loading_dose_mg: float | None = Field(default=None, gt=0, le=MAX_DOSE_MG)


@router.post("/vancomycin/simulate", dependencies=[Depends(_json_only)])
async def vancomycin_simulate(
    request: Request, s: SessionDep, body: SimulateRequest
) -> dict[str, Any]:
    if body.infusion_h >= body.interval_h:
        raise HTTPException(422, "the infusion must end before the next dose starts")
    if body.dose_mg / body.infusion_h > MAX_RATE_MG_H:
        raise HTTPException(
            422, f"infusion faster than {MAX_RATE_MG_H:.0f} mg/h (vancomycin label: 10 mg/min)"
        )
    rt = _runtime(request)
    data = await _fetch(request, s)
    if body.loading_dose_mg is not None and body.loading_dose_mg <= body.dose_mg:
        raise HTTPException(422, "a loading dose is larger than the maintenance dose")
    regimen = Regimen(
        dose_mg=body.dose_mg,
        interval_h=body.interval_h,
        infusion_h=body.infusion_h,
        loading_dose_mg=body.loading_dose_mg,
    )
    try:
        return views.simulate(data.resources, _now(), rt.settings.vancomycin_model, regimen)
    except DosingError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/history")
async def history(request: Request, s: SessionDep) -> dict[str, Any]:
    rt = _runtime(request)
    return views.history(rt.audit, s.patient, twin_scope(rt.settings, s.iss))
