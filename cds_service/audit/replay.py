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

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from cds_service.audit.chain import StoredAuditRecord, canonical_json
from cds_service.http.cards import Card, Link
from onnx_models.errors import ModelFileError
from onnx_models.registry import LoadedModel, ModelRegistry, load_model
from twin_engine.pk.errors import DosingError
from twin_engine.pk.history import DialysisEvidence, Measured, PatientHistory, extract_history
from twin_engine.pk.types import DoseEvent, LevelObservation
from twin_engine.store import TwinStore

#: Statuses of calls that ended before a model ran: their records hold nothing to replay.
NOTHING_RAN = ("error", "bad-request", "data-unavailable")

ReplayOutcome = Literal["identical", "different", "nothing-to-replay", "not-replayable"]


# ---------------------------------------------------------------- what the record keeps


def risk_basis(today: date, *, launch_url: str, kfre_model: str) -> dict[str, Any]:
    """The replay basis of a risk-service call."""
    return {
        "kind": "risk",
        "today": today.isoformat(),
        "appLaunchUrl": launch_url,
        "kfreModel": kfre_model,
    }


def _measured(m: Measured | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"value": m.value, "time": m.time.isoformat(), "source": m.source}


def _unmeasured(d: Mapping[str, Any] | None) -> Measured | None:
    if d is None:
        return None
    return Measured(float(d["value"]), datetime.fromisoformat(d["time"]), str(d["source"]))


def history_to_json(h: PatientHistory) -> dict[str, Any]:
    """A PK history as the record keeps it: numbers, times and source ids only."""
    return {
        "patient": h.patient,
        "age": h.age,
        "sex": h.sex,
        "weight": _measured(h.weight),
        "creatinine": _measured(h.creatinine),
        "dialysis": {
            "status": h.dialysis.status,
            "source": h.dialysis.source,
            "note": h.dialysis.note,
        },
        "doses": [
            {
                "start": d.start.isoformat(),
                "durationH": d.duration_h,
                "amountMg": d.amount_mg,
                "source": d.source,
            }
            for d in h.doses
        ],
        "levels": [
            {
                "time": lv.time.isoformat(),
                "valueMgL": lv.value_mg_l,
                "kind": lv.kind,
                "source": lv.source,
            }
            for lv in h.levels
        ],
        "notes": list(h.notes),
    }


def history_from_json(d: Mapping[str, Any]) -> PatientHistory:
    dialysis = d["dialysis"]
    return PatientHistory(
        patient=str(d["patient"]),
        age=d["age"],
        sex=d["sex"],
        weight=_unmeasured(d["weight"]),
        creatinine=_unmeasured(d["creatinine"]),
        dialysis=DialysisEvidence(dialysis["status"], dialysis["source"], dialysis["note"]),
        doses=tuple(
            DoseEvent(
                datetime.fromisoformat(x["start"]),
                float(x["durationH"]),
                float(x["amountMg"]),
                str(x["source"]),
            )
            for x in d["doses"]
        ),
        levels=tuple(
            LevelObservation(
                datetime.fromisoformat(x["time"]), float(x["valueMgL"]), x["kind"], str(x["source"])
            )
            for x in d["levels"]
        ),
        notes=tuple(d["notes"]),
    )


def dosing_basis(
    resources: Sequence[Mapping[str, Any]],
    context: Mapping[str, Any],
    *,
    as_of: datetime,
    model_id: str,
    launch_url: str,
) -> dict[str, Any]:
    """The replay basis of a dosing call: the draft and the PK history it was fitted to,
    read exactly as ``vancomycin.dosing_cards`` read them (or the problem that stopped it)."""
    from cds_service.services.vancomycin import DraftOrderError, find_draft

    basis: dict[str, Any] = {
        "kind": "dosing",
        "asOf": as_of.isoformat(),
        "appLaunchUrl": launch_url,
        "pkModel": model_id,
        "draft": None,
        "history": None,
        "problem": None,
    }
    try:
        draft = find_draft(dict(context))
    except DraftOrderError as exc:
        return basis | {"problem": str(exc)}
    if draft is None:
        return basis
    basis["draft"] = draft.resource
    try:
        basis["history"] = history_to_json(extract_history(resources, as_of=as_of))
    except DosingError as exc:
        basis["problem"] = str(exc)
    return basis


# ---------------------------------------------------------------- the model archive


class ModelNotArchived(Exception):
    """The record names a model file (by sha256) that the archive does not hold."""


class ArchivedModelChanged(Exception):
    """The archive's file for a sha256 no longer has that sha256."""


class ModelArchive:
    """Every model file the service has served, content-addressed: ``<sha256>.onnx``.

    Written when the service starts (``keep``) and never pruned, so the file behind any
    record can be found by the sha256 the record names. Files are immutable once written
    (written to a temporary name, then renamed).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Loaded sessions by sha256: the bytes are still read and hashed on every use,
        # so a file changed since is caught; only the session build is saved.
        self._models: dict[str, LoadedModel] = {}
        self._simulators: dict[str, Any] = {}

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ModelNotArchived(f"{sha256!r} is not a sha256 hex digest")
        return self.directory / f"{sha256}.onnx"

    def keep(self, data: bytes) -> str:
        """Archive a model file's bytes; return their sha256 (a no-op when already kept)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.is_file():
            return sha
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return sha

    def read(self, sha256: str, what: str) -> bytes:
        """The archived bytes of ``what`` (e.g. "model pce v1.0.0"), checked against its sha."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise ModelNotArchived(
                f"{what} (sha256 {sha256}) is not in the model archive {self.directory}"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArchivedModelChanged(
                f"{what}: the archived file {target} now has sha256 {actual}, not the "
                f"recorded {sha256}: it was changed after it was served"
            )
        return data

    def model(self, sha256: str, what: str) -> LoadedModel:
        """The archived risk model of this sha256, checked, as an inference session."""
        self.read(sha256, what)
        if sha256 not in self._models:
            try:
                loaded = load_model(self.path(sha256))
            except ModelFileError as exc:
                raise ArchivedModelChanged(
                    f"{what}: the archived file cannot be loaded: {exc}"
                ) from exc
            if loaded.sha256 != sha256:
                raise ArchivedModelChanged(f"{what}: the archived file changed while loading")
            self._models[sha256] = loaded
        return self._models[sha256]

    def simulator(self, sha256: str, what: str) -> Any:
        """The archived PK model of this sha256, checked, as a simulator."""
        from onnx_models.pk.simulator import OnnxPkSimulator

        data = self.read(sha256, what)
        if sha256 not in self._simulators:
            self._simulators[sha256] = OnnxPkSimulator(data)
        return self._simulators[sha256]


def pk_artifact(model_id: str) -> Path:
    from onnx_models.pk.simulator import ARTIFACTS_DIR

    return ARTIFACTS_DIR / f"{model_id}.onnx"


def archive_served(
    archive: ModelArchive, registry: ModelRegistry, pk_model_ids: Iterable[str]
) -> dict[str, str]:
    """Archive every model the service is about to serve; {model id: sha256}."""
    kept = {m.model_id: archive.keep(m.path.read_bytes()) for m in registry.models.values()}
    for model_id in pk_model_ids:
        kept[model_id] = archive.keep(pk_artifact(model_id).read_bytes())
    return kept


def installed_shas(registry: ModelRegistry) -> dict[str, str]:
    """{model id: sha256} of what is installed now (risk models and every PK artifact)."""
    from onnx_models.pk.models import MODELS

    shas = {m.model_id: m.sha256 for m in registry.models.values()}
    for model_id in MODELS:
        path = pk_artifact(model_id)
        if path.is_file():
            shas[model_id] = hashlib.sha256(path.read_bytes()).hexdigest()
    return shas


# ---------------------------------------------------------------- replay


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
    from cds_service.pipeline.render import app_link
    from cds_service.pipeline.run import _outputs_for_audit, risk_outcome
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
            "outputs": (body.get("outputs"), _outputs_for_audit(assessments)),
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
    from cds_service.http.cards import Source
    from cds_service.pipeline.run import _dosing_outputs
    from cds_service.services.vancomycin import (
        DosingOutcome,
        _problem_card,
        _result_card,
        dose_simulator_context,
        read_draft,
    )
    from onnx_models.pk.models import MODELS
    from twin_engine.pk.recommend import covariates_from_history, plan_dosing

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
        history = history_from_json(basis["history"])
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
        try:
            covariates = covariates_from_history(history, model, as_of=as_of, dialysis=None)
            result = plan_dosing(
                covariates=covariates,
                doses=history.doses,
                levels=history.levels,
                as_of=as_of,
                model=model,
                simulator=simulator,
                draft_regimen=draft.regimen,
                notes=history.notes,
            )
        except DosingError as exc:
            outcome = DosingOutcome((_problem_card(str(exc), source, link),), None, str(exc))
        else:
            outcome = DosingOutcome((_result_card(draft, result, source, link),), result, None)
    return _Replayed(
        {
            "outputs": (body.get("outputs"), _dosing_outputs(outcome)),
            "cards": (body.get("cards"), _cards_json(outcome.cards, body.get("cards") or [])),
        },
        notes,
    )
