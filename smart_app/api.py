"""The clinician app's JSON API (``/app/api/...``), behind the server-side session.

Every call needs the session cookie set at the end of the SMART launch; the data come
from the EHR's FHIR server with the token that session holds (never sent to the
browser), for the launch's patient only (``patient_data``). The twin is built and stored
exactly as a hook call builds and stores it (same store key: tenant or issuer, then
patient), so a card's ``appContext.twinVersion`` names a version the app can open.

    GET  /session                 the launch context, without the token
    GET  /twin                    banner, timelines, clinical state, issues (twin_view)
    GET  /risk                    the models' results and waterfalls (risk_view)
    GET  /whatif  POST /whatif    the what-if's start, and the risk under a therapy
    GET  /vancomycin              the PK twin and the regimens to consider (dose_view)
    POST /vancomycin/simulate     one regimen's prediction and curve
    GET  /history                 this patient's recommendations here (history_view)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from cds_service.http.deps import RuntimeDep
from cds_service.services.vancomycin import MAX_DRAFT_DOSE_MG, MAX_DRAFT_INTERVAL_H
from smart_app import dose_view, history_view, risk_view, twin_view
from smart_app.deps import (
    ComputedDep,
    PatientCacheDep,
    PatientDataDep,
    SessionDep,
    SessionsDep,
    json_only,
)
from smart_app.errors import Unanswerable
from smart_app.launch import twin_scope
from smart_app.patient_data import compute, fetch
from smart_app.schema import SessionInfo
from twin_engine.pk.errors import DosingError
from twin_engine.pk.regimen import MAX_DOSE_MG, MAX_RATE_MG_H
from twin_engine.pk.types import Regimen

router = APIRouter(prefix="/app/api", tags=["clinician app"])


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/session")
async def session_info(s: SessionDep) -> SessionInfo:
    """The launch context, without the token."""
    return SessionInfo(
        patient=s.patient,
        encounter=s.encounter,
        user=s.user,
        need_patient_banner=s.need_patient_banner,
        smart_style_url=s.smart_style_url,
        style=s.style,
        app_context=s.app_context,
        expires_at=datetime.fromtimestamp(s.expires_at, UTC).isoformat(),
    )


@router.get("/twin")
async def twin(c: ComputedDep) -> twin_view.TwinPanel:
    return twin_view.twin_panel(c, _now())


@router.get("/risk")
async def risk(c: ComputedDep) -> risk_view.RiskPanel:
    return risk_view.risk_view(c.runs, c.twin.version, c.features.as_of)


class WhatIfRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statin: Literal["none", "moderate", "high"] = "none"
    #: Project bounds around the targets offered (120-140 mm Hg), so the per-10 mm Hg
    #: effect (Ettehad 2016) is never extrapolated far from what the trials achieved.
    sbp_target_mm_hg: float | None = Field(default=None, ge=110, le=150)


@router.get("/whatif")
async def whatif_options(c: ComputedDep) -> risk_view.WhatIfOptions | risk_view.WhatIfUnavailable:
    return risk_view.whatif_options(c.runs, c.features)


# The POSTs read the patient's data after their body is checked (a 422 before any
# EHR read), so they call the flow themselves instead of depending on it.
@router.post("/whatif", dependencies=[Depends(json_only)])
async def whatif(
    body: WhatIfRequest,
    s: SessionDep,
    rt: RuntimeDep,
    sessions: SessionsDep,
    cache: PatientCacheDep,
) -> risk_view.WhatIfResult:
    c = await compute(rt, sessions, cache, s)
    return risk_view.whatif(c.runs, c.features, body.statin, body.sbp_target_mm_hg)


@router.get("/vancomycin")
async def vancomycin(
    data: PatientDataDep, rt: RuntimeDep
) -> dose_view.VancomycinPanel | dose_view.VancomycinUnavailable:
    return dose_view.vancomycin_view(data.resources, _now(), rt.settings.vancomycin_model)


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


@router.post("/vancomycin/simulate", dependencies=[Depends(json_only)])
async def vancomycin_simulate(
    body: SimulateRequest,
    s: SessionDep,
    rt: RuntimeDep,
    sessions: SessionsDep,
    cache: PatientCacheDep,
) -> dose_view.Simulation:
    if body.infusion_h >= body.interval_h:
        raise Unanswerable("the infusion must end before the next dose starts")
    if body.dose_mg / body.infusion_h > MAX_RATE_MG_H:
        raise Unanswerable(
            f"infusion faster than {MAX_RATE_MG_H:.0f} mg/h (vancomycin label: 10 mg/min)"
        )
    data = await fetch(rt, sessions, cache, s)
    if body.loading_dose_mg is not None and body.loading_dose_mg <= body.dose_mg:
        raise Unanswerable("a loading dose is larger than the maintenance dose")
    regimen = Regimen(
        dose_mg=body.dose_mg,
        interval_h=body.interval_h,
        infusion_h=body.infusion_h,
        loading_dose_mg=body.loading_dose_mg,
    )
    try:
        return dose_view.simulate(data.resources, _now(), rt.settings.vancomycin_model, regimen)
    except DosingError as exc:
        raise Unanswerable(str(exc)) from exc


@router.get("/history")
async def history(s: SessionDep, rt: RuntimeDep) -> history_view.History:
    return history_view.history(rt.audit, s.patient, twin_scope(rt.settings, s.iss))
