"""Replay: rebuild a recorded hook call and check it byte for byte against its record.

The contract a ``hook`` record must keep for replay (whatever else is added to or
removed from records later):

- ``service`` and ``status``: which computation ran, and whether one ran at all
  (``error``, ``bad-request`` and ``data-unavailable`` end before any model runs: there
  is nothing to replay, and replay says so);
- ``twin`` (``version``, ``contentHash``, ``storeKey`` when set): the state the models
  saw, reloaded from the twin store and checked against the hash;
- ``model`` and ``otherModels`` (id, version, sha256): each model file is taken from the
  content-addressed :class:`ModelArchive` by its sha256, never from what is installed
  now, so a record stays replayable after an upgrade; a missing file is named;
- ``replayBasis``: what the twin does not hold — for risk services the day the features
  were derived (``today``), the launch URL the cards link to and the KFRE calibration;
  for dosing the call's ``asOf`` time, the drafted order, the PK history read from the
  FHIR data (doses, levels, covariates with their sources; never the raw resources) or
  the problem that stopped the fit;
- ``inputs``, ``outputs``, ``explanation``, ``missing`` and ``cards``: what is compared.
  For dosing, ``outputs`` and ``cards`` are compared (its ``inputs`` are the dosing
  service's to define).

Card and suggestion ``uuid`` values are random identifiers drawn when the call was
answered; replay takes them from the record in document order, so every other byte of
the cards must match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from cds_service.audit.archive import (
    ArchivedModelChanged,
    ModelArchive,
    ModelNotArchived,
    archive_served,
    installed_shas,
    pk_artifact,
)
from cds_service.audit.basis import history_from_json
from cds_service.audit.chain import CHAIN_BROKEN, StoredAuditRecord, canonical_json
from cds_service.http.cards import Card, Link, Source
from onnx_models.registry import ModelRegistry
from twin_engine.store import TwinStore

# The archive is replay's model source; its names stay importable from here.
__all__ = [
    "ArchivedModelChanged",
    "ModelArchive",
    "ModelNotArchived",
    "PartCheck",
    "ReplayReport",
    "archive_served",
    "installed_shas",
    "pk_artifact",
    "replay_record",
]

#: Statuses of calls that ended before a model ran: their records hold nothing to replay.
NOTHING_RAN = ("error", "bad-request", "data-unavailable")

ReplayOutcome = Literal["identical", "different", "nothing-to-replay", "not-replayable"]


@dataclass(frozen=True, slots=True)
class PartCheck:
    """One compared part of the record: identical, or the first difference."""

    part: str
    identical: bool
    difference: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"part": self.part, "identical": self.identical, "difference": self.difference}


@dataclass(frozen=True, slots=True)
class ReplayReport:
    seq: int
    outcome: ReplayOutcome
    reason: str
    checks: tuple[PartCheck, ...] = ()
    models: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "outcome": self.outcome,
            "reason": self.reason,
            "checks": [c.to_json() for c in self.checks],
            "models": list(self.models),
            "notes": list(self.notes),
        }


class _NotReplayable(Exception):
    pass


def _first_difference(recorded: Any, replayed: Any, path: str = "$") -> str | None:
    """The JSON path of the first difference, with both values (shortened)."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in sorted(set(recorded) | set(replayed)):
            if key not in recorded or key not in replayed:
                return f"{path}.{key}: only in the {'replay' if key in replayed else 'record'}"
            found = _first_difference(recorded[key], replayed[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list) and isinstance(replayed, list):
        for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        if len(recorded) != len(replayed):
            return f"{path}: {len(recorded)} items recorded, {len(replayed)} replayed"
        return None
    if canonical_json(recorded) != canonical_json(replayed):
        return f"{path}: recorded {str(recorded)[:120]!r}, replayed {str(replayed)[:120]!r}"
    return None


def _check(part: str, recorded: Any, replayed: Any) -> PartCheck:
    if canonical_json(recorded) == canonical_json(replayed):
        return PartCheck(part, True)
    return PartCheck(part, False, _first_difference(recorded, replayed) or "byte forms differ")


def _uuids(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key in sorted(value):
            if key == "uuid" and isinstance(value[key], str):
                found.append(value[key])
            else:
                found.extend(_uuids(value[key]))
    elif isinstance(value, list):
        for item in value:
            found.extend(_uuids(item))
    return found


def _with_uuids(value: Any, uuids: list[str]) -> Any:
    """``value`` with its uuid values replaced, in document order, by ``uuids``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            if key == "uuid" and isinstance(value[key], str) and uuids:
                out[key] = uuids.pop(0)
            else:
                out[key] = _with_uuids(value[key], uuids)
        return out
    if isinstance(value, list):
        return [_with_uuids(item, uuids) for item in value]
    return value


def _cards_json(cards: Iterable[Card], recorded: list[Any]) -> list[Any]:
    replayed = [c.model_dump(mode="json", exclude_none=True) for c in cards]
    return list(_with_uuids(replayed, _uuids(recorded)))


def _model_uses(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    uses = [body["model"]] if body.get("model") else []
    return uses + list(body.get("otherModels") or [])


@dataclass(frozen=True, slots=True)
class _Replayed:
    parts: dict[str, tuple[Any, Any]]
    notes: tuple[str, ...] = ()


def replay_record(
    rec: StoredAuditRecord,
    *,
    twins: TwinStore,
    archive: ModelArchive,
    installed: Mapping[str, str],
) -> ReplayReport:
    """Rebuild one hook call from its twin version and archived models; compare."""
    body = rec.body
    if rec.damage:
        why = f"record {rec.seq}: {rec.damage}; the chain is {CHAIN_BROKEN}"
        return ReplayReport(rec.seq, "not-replayable", why)
    if rec.kind != "hook":
        return ReplayReport(
            rec.seq,
            "nothing-to-replay",
            f"record {rec.seq} is a {rec.kind} record: only hook calls are replayed",
        )
    status = body.get("status")
    if status in NOTHING_RAN:
        return ReplayReport(
            rec.seq,
            "nothing-to-replay",
            f"record {rec.seq}: the call ended {status} ({body.get('error')}) before any "
            "model ran; the record holds no output to reproduce",
        )
    models = tuple(
        {
            "id": m["id"],
            "version": m["version"],
            "sha256": m["sha256"],
            "installedSha256": installed.get(m["id"]),
            "installedIsRecorded": installed.get(m["id"]) == m["sha256"],
        }
        for m in _model_uses(body)
    )
    notes = tuple(
        f"model {m['id']} v{m['version']}: "
        + (
            "no longer installed"
            if m["installedSha256"] is None
            else f"the installed file has sha256 {m['installedSha256']}, not the recorded "
            f"{m['sha256']}"
        )
        + "; replayed with the archived file"
        for m in models
        if not m["installedIsRecorded"]
    )
    try:
        replayed = _replay(rec, twins=twins, archive=archive)
    except (_NotReplayable, ModelNotArchived, ArchivedModelChanged) as exc:
        return ReplayReport(rec.seq, "not-replayable", str(exc), (), models, notes)
    checks = tuple(_check(part, a, b) for part, (a, b) in replayed.parts.items())
    identical = all(c.identical for c in checks)
    reason = (
        f"record {rec.seq}: replay is byte-identical ({', '.join(c.part for c in checks)})"
        if identical
        else f"record {rec.seq}: replay differs in "
        + ", ".join(c.part for c in checks if not c.identical)
    )
    return ReplayReport(
        rec.seq,
        "identical" if identical else "different",
        reason,
        checks,
        models,
        notes + replayed.notes,
    )


def _load_twin(rec: StoredAuditRecord, twins: TwinStore) -> tuple[Any, int]:
    from twin_engine.errors import TwinEngineError

    body = rec.body
    twin_ref = body.get("twin")
    if not twin_ref or not body.get("patient"):
        raise _NotReplayable(f"record {rec.seq} names no twin version")
    key = twin_ref.get("storeKey") or body["patient"]
    try:
        stored = twins.load(key, int(twin_ref["version"]))
    except TwinEngineError as exc:
        raise _NotReplayable(
            f"record {rec.seq}: twin version {twin_ref['version']} is not in the twin store: {exc}"
        ) from exc
    try:
        twin = stored.twin()
    except TwinEngineError as exc:  # the stored state no longer validates (TwinStateError)
        raise _NotReplayable(
            f"record {rec.seq}: twin version {twin_ref['version']} in the store does not load: "
            f"{exc}"
        ) from exc
    if twin.content_hash() != twin_ref["contentHash"]:
        raise _NotReplayable(
            f"record {rec.seq}: twin version {twin_ref['version']} in the store has content "
            f"hash {twin.content_hash()}, not the recorded {twin_ref['contentHash']}"
        )
    return twin, int(twin_ref["version"])


def _archived_registry(body: Mapping[str, Any], archive: ModelArchive) -> ModelRegistry:
    return ModelRegistry(
        models={
            use["id"]: archive.model(use["sha256"], f"model {use['id']} v{use['version']}")
            for use in _model_uses(body)
        }
    )


def _replay(rec: StoredAuditRecord, *, twins: TwinStore, archive: ModelArchive) -> _Replayed:
    from cds_service.services.catalog import SERVICES

    body = rec.body
    basis = body.get("replayBasis")
    if not isinstance(basis, dict):
        raise _NotReplayable(
            f"record {rec.seq} has no replay basis (written before records kept one): "
            "the day and settings it was computed with are unknown"
        )
    service = SERVICES.get(str(body.get("service")))
    if service is None:
        raise _NotReplayable(f"record {rec.seq}: service {body.get('service')!r} no longer exists")
    twin, version = _load_twin(rec, twins)
    if basis.get("kind") == "dosing":
        return _replay_dosing(rec, basis, twin.patient_id, version, archive)
    return _replay_risk(rec, basis, service, twin, version, archive)


def _replay_risk(
    rec: StoredAuditRecord,
    basis: Mapping[str, Any],
    service: Any,
    twin: Any,
    version: int,
    archive: ModelArchive,
) -> _Replayed:
    from cds_service.pipeline.outcome import outputs_for_audit, risk_outcome
    from cds_service.pipeline.render import app_link
    from onnx_models.errors import UnknownModelError
    from twin_engine import derive_features

    body = rec.body
    registry = _archived_registry(body, archive)
    features = derive_features(twin, date.fromisoformat(basis["today"]))
    link = app_link(service, str(basis["appLaunchUrl"]), twin.patient_id, version)
    try:
        outcome = risk_outcome(service, registry, twin, features, str(basis["kfreModel"]), link)
    except UnknownModelError as exc:
        raise _NotReplayable(
            f"record {rec.seq}: the replay needs model {exc.model_id!r}, "
            "which the record does not name"
        ) from exc
    cards, assessments = list(outcome.cards), outcome.assessments
    primary = assessments[0]
    uses = [
        {"id": a.model.card.id, "version": a.model.card.version, "sha256": a.model.sha256}
        for a in assessments
    ]
    from cds_service.audit.log import explanation_for_audit

    return _Replayed(
        {
            "models": (_model_uses(body), uses),
            "inputs": (body.get("inputs"), primary.inputs_json()),
            "outputs": (body.get("outputs"), outputs_for_audit(assessments)),
            "explanation": (
                body.get("explanation"),
                list(explanation_for_audit(primary.factors)),
            ),
            "missing": (body.get("missing"), [n.name for n in primary.not_used]),
            "cards": (body.get("cards"), _cards_json(cards, body.get("cards") or [])),
        }
    )


def _replay_dosing(
    rec: StoredAuditRecord,
    basis: Mapping[str, Any],
    patient_id: str,
    version: int,
    archive: ModelArchive,
) -> _Replayed:
    from cds_service.pipeline.outcome import dosing_outputs
    from cds_service.services.vancomycin import (
        DosingOutcome,
        _problem_card,
        dose_simulator_context,
        dosing_outcome,
        read_draft,
    )
    from onnx_models.pk.models import MODELS

    body = rec.body
    model_id = str(basis["pkModel"])
    model = MODELS.get(model_id)
    if model is None:
        raise _NotReplayable(f"record {rec.seq}: PK model {model_id!r} no longer exists")
    recorded_use = body.get("model") or {}
    if recorded_use.get("id") != model_id:
        raise _NotReplayable(
            f"record {rec.seq}: its model {recorded_use.get('id')!r} is not the "
            f"replay basis's {model_id!r}"
        )
    link = Link(
        label="Open the dose simulator",
        url=str(basis["appLaunchUrl"]),
        type="smart",
        appContext=dose_simulator_context(patient_id, version),
    )
    source = Source(label=f"twin-cds · {model.name} v{model.version}")
    as_of = datetime.fromisoformat(basis["asOf"])
    outcome: DosingOutcome
    notes: tuple[str, ...] = ()
    if basis.get("problem"):
        problem = str(basis["problem"])
        outcome = DosingOutcome((_problem_card(problem, source, link),), None, problem)
        notes = ("no model ran (the data did not allow a fit); the card was re-rendered",)
    elif basis.get("draft") is None:
        outcome = DosingOutcome((), None, None)
        notes = ("no vancomycin draft in the call: nothing was computed and no card sent",)
    else:
        simulator = archive.simulator(
            recorded_use["sha256"], f"PK model {model_id} v{recorded_use['version']}"
        )
        draft = read_draft(dict(basis["draft"]))
        if draft is None:
            # The Dosage reader now reads the recorded order as not intravenous (oral,
            # rectal, intrathecal): no systemic exposure, so no card.
            return _Replayed(
                {
                    "outputs": (body.get("outputs"), None),
                    "cards": (body.get("cards"), []),
                },
                ("the recorded draft is not an intravenous order: no card is sent for it now",),
            )
        outcome = dosing_outcome(
            draft,
            history_from_json(basis["history"]),
            as_of=as_of,
            model=model,
            simulator=simulator,
            link=link,
        )
    return _Replayed(
        {
            "outputs": (body.get("outputs"), dosing_outputs(outcome)),
            "cards": (body.get("cards"), _cards_json(outcome.cards, body.get("cards") or [])),
        },
        notes,
    )
