"""What the clinician app's routes get through ``Depends``: the one place the app reads
``app.state`` (``smart_app.routes.install`` puts its parts there; the service's own
parts come through ``cds_service.http.deps``)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from cds_service.http.deps import RuntimeDep
from smart_app.context import AppSession
from smart_app.embedding import COOKIE
from smart_app.errors import NoSession, NotJson
from smart_app.patient_data import Computed, PatientCache, PatientData, compute, fetch
from smart_app.refresh import refresh_due, refresh_session
from smart_app.sessions import SessionStore


def get_sessions(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.app_sessions
    return sessions


def get_patient_cache(request: Request) -> PatientCache:
    cache: PatientCache = request.app.state.app_patient_cache
    return cache


SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
PatientCacheDep = Annotated[PatientCache, Depends(get_patient_cache)]


async def require_session(request: Request, store: SessionsDep) -> AppSession:
    """The launch behind the cookie (refreshed when its token is about to expire), or
    ``NoSession`` (401)."""
    session_id = request.cookies.get(COOKIE)
    data = store.get(session_id, "active")
    if data is not None and session_id is not None and refresh_due(data, time.time()):
        data = await refresh_session(request, session_id, data)
    if data is None or session_id is None:
        raise NoSession("no app session; launch the app from the EHR")
    return AppSession.from_stored(session_id, data)


SessionDep = Annotated[AppSession, Depends(require_session)]


def json_only(request: Request) -> None:
    """415 unless the body is declared JSON. A form post from another site cannot send
    application/json without a preflight, which we do not allow for the app: with
    SameSite=Lax, this closes CSRF."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise NotJson("send application/json")


async def patient_data(
    s: SessionDep, rt: RuntimeDep, sessions: SessionsDep, cache: PatientCacheDep
) -> PatientData:
    """The launch patient's FHIR data (``patient_data.fetch``)."""
    return await fetch(rt, sessions, cache, s)


async def computed(
    s: SessionDep, rt: RuntimeDep, sessions: SessionsDep, cache: PatientCacheDep
) -> Computed:
    """The twin, features and model runs of the launch patient (``patient_data.compute``)."""
    return await compute(rt, sessions, cache, s)


PatientDataDep = Annotated[PatientData, Depends(patient_data)]
ComputedDep = Annotated[Computed, Depends(computed)]
