"""What the routes get through ``Depends``: the one place that reads ``app.state``.

``twin_cds.app.create_app`` puts the service's parts on ``app.state`` (``publish``
names them); routes declare what they need with the ``...Dep`` types below, and tests
swap a part by setting it on ``app.state`` or through ``app.dependency_overrides``.

    settings, registry, offered services,     from the start (create_app)
    replay cache, auditor verifier, readiness
    runtime (stores, registry, HTTP client),  from the lifespan: a request is served
    client verifier                           only inside it

The getters are ``async def`` although they only read ``app.state``: FastAPI runs a
plain ``def`` dependency in its thread pool, and a hook call's three such hops cost it
more CPU than its body's JSON parse (bench/profile_cold.py).

A hook or feedback call takes one dependency, ``HookCallDep`` (its client, verified
first, the services offered and the runtime), not three: FastAPI spends 20-25 us
solving each ``Depends`` of a call, and the client's own ``SettingsDep`` made a
fourth; together ~0.14 ms of a hook call before its body was read. Tests swap its
parts on ``app.state``, or override ``hook_call`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from cds_service.audit.auth import AuditorVerifier
from cds_service.http.auth import ClientVerifier, JtiCache, VerifiedClient
from cds_service.ops.readiness import Readiness
from cds_service.pipeline.run import Runtime
from cds_service.services.catalog import ServiceDefinition
from cds_service.settings import Settings
from onnx_models.registry import ModelRegistry


def publish(
    app: FastAPI,
    *,
    settings: Settings,
    registry: ModelRegistry,
    offered: Mapping[str, ServiceDefinition],
    replay: JtiCache,
    auditor_verifier: AuditorVerifier,
    readiness: Readiness,
) -> None:
    """Put what exists from the start on ``app.state`` (the lifespan adds the runtime
    and the verifier with ``publish_runtime``)."""
    app.state.settings = settings
    app.state.registry = registry
    app.state.offered = offered
    app.state.replay = replay
    app.state.auditor_verifier = auditor_verifier
    app.state.readiness = readiness


def publish_runtime(app: FastAPI, runtime: Runtime, verifier: ClientVerifier) -> None:
    app.state.runtime = runtime
    app.state.verifier = verifier


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_offered(request: Request) -> Mapping[str, ServiceDefinition]:
    """The services this deployment offers: those whose models all loaded."""
    offered: Mapping[str, ServiceDefinition] = request.app.state.offered
    return offered


async def get_replay_cache(request: Request) -> JtiCache:
    replay: JtiCache = request.app.state.replay
    return replay


async def get_readiness(request: Request) -> Readiness:
    readiness: Readiness = request.app.state.readiness
    return readiness


async def get_auditor_verifier(request: Request) -> AuditorVerifier:
    verifier: AuditorVerifier = request.app.state.auditor_verifier
    return verifier


def get_verifier(request: Request) -> ClientVerifier:
    verifier: ClientVerifier = request.app.state.verifier
    return verifier


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
OfferedDep = Annotated[Mapping[str, ServiceDefinition], Depends(get_offered)]
ReplayCacheDep = Annotated[JtiCache, Depends(get_replay_cache)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
AuditorVerifierDep = Annotated[AuditorVerifier, Depends(get_auditor_verifier)]


async def authenticate(request: Request, settings: SettingsDep) -> VerifiedClient | None:
    """The CDS client behind the call (None when authentication is off), or
    ``Unauthorized`` (a bare 401)."""
    return await _verified_client(request, settings)


ClientDep = Annotated[VerifiedClient | None, Depends(authenticate)]


@dataclass(frozen=True, slots=True)
class HookCall:
    """What a hook or feedback call is served with."""

    client: VerifiedClient | None
    offered: Mapping[str, ServiceDefinition]
    rt: Runtime


async def hook_call(request: Request) -> HookCall:
    """The caller authenticated (before anything else is looked at), then the parts."""
    state = request.app.state
    client = await _verified_client(request, state.settings)
    return HookCall(client, state.offered, state.runtime)


HookCallDep = Annotated[HookCall, Depends(hook_call)]


async def _verified_client(request: Request, settings: Settings) -> VerifiedClient | None:
    if not settings.auth_required:
        return None
    # aud must be the exact URL called, as the EHR knows us (public_base_url).
    audience = settings.public_base_url.rstrip("/") + request.url.path
    # Every Authorization value as received: two of them are refused.
    return await get_verifier(request).verify(request.headers.getlist("authorization"), audience)
