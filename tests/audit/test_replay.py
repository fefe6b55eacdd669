"""Replay: every record the real service writes rebuilds byte for byte, or says why not."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds_service.audit.log import StoredAuditRecord
from cds_service.audit.replay import (
    ModelArchive,
    ReplayReport,
    installed_shas,
    replay_record,
)
from cds_service.audit.sql import open_audit_log
from cds_service.settings import Settings
from cds_service.stores import open_twin_store
from onnx_models.registry import ModelRegistry
from tests.audit.conftest import STORES
from tests.audit.stores import audit_cli, service_settings
from tests.conftest import hook_request, prefetch_from_bundle
from tests.support.vancomycin import draft_order, order_sign_call
from twin_cds.app import create_app
from twin_engine.store import StoredTwin

#: A fixed day (after the demo data) for the risk calls: replay must use the recorded day.
FIXED_TODAY = date(2026, 6, 1)


@dataclasses.dataclass(frozen=True)
class Trail:
    settings: Settings
    records: list[StoredAuditRecord]


@pytest.fixture(scope="module", params=STORES)
def trail(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo_bundles: list[dict[str, Any]],
) -> Iterator[Trail]:
    """Risk (two services), dosing (fitted, off target), no-card, dosing-problem and error
    records, written by the real service (SQLite stores, and PostgreSQL when present)."""
    data = tmp_path_factory.mktemp("replay") / "data"
    with service_settings(request.param, data) as settings:
        yield _write_trail(settings, demo_bundles)


def _write_trail(settings: Settings, demo_bundles: list[dict[str, Any]]) -> Trail:
    with TestClient(create_app(settings)) as c:
        c.app.state.runtime = dataclasses.replace(c.app.state.runtime, today=lambda: FIXED_TODAY)  # type: ignore[attr-defined]
        for n, bundle in enumerate(demo_bundles[:4]):
            pf = prefetch_from_bundle(bundle)
            for service in ("ascvd-risk", "cardio-renal-risk"):
                body = hook_request(pf["patient"]["id"], pf, hookInstance=f"{service}-{n}")
                assert c.post(f"/cds-services/{service}", json=body).status_code == 200
        calls = [
            order_sign_call(1, draft_order(500, 24), dialysis=False),  # off target: a suggestion
            order_sign_call(2, draft_order(1250, 12), dialysis=False),
            # Warfarin: no card. Dialysis unknown: a problem card.
            order_sign_call(3, draft_order(5, 24, drug="11289"), dialysis=False),
            order_sign_call(4, draft_order(1000, 12), dialysis=None),
        ]
        for body in calls:
            assert c.post("/cds-services/vancomycin-dosing-sign", json=body).status_code == 200
        # A malformed call (bad request) and a refused one are on the record too.
        c.post("/cds-services/ascvd-risk", json={"hook": "patient-view"})
        c.post("/cds-services/no-such-service", json={})
    log = open_audit_log(settings)
    try:
        records = log.records()
    finally:
        log.close()
    return Trail(settings, records)


def _replay(trail: Trail, rec: StoredAuditRecord, **over: Any) -> ReplayReport:
    twins = open_twin_store(trail.settings)
    try:
        kwargs: dict[str, Any] = {
            "twins": twins,
            "archive": ModelArchive(trail.settings.model_archive_dir),
            "installed": installed_shas(ModelRegistry.load()),
        }
        kwargs.update(over)
        return replay_record(rec, **kwargs)
    finally:
        twins.close()


def _kind(rec: StoredAuditRecord) -> str:
    body = rec.body
    if body["status"] in ("error", "bad-request", "data-unavailable"):
        return "error"
    if body["status"] == "no-card":
        return "no-card"
    return "dosing" if body["service"].startswith("vancomycin") else "risk"


def test_every_record_replays_byte_identical_or_says_why_not(trail: Trail) -> None:
    """Risk, dosing and no-card records replay byte-identical; error records say nothing ran."""
    seen: dict[str, int] = {}
    for rec in trail.records:
        report = _replay(trail, rec)
        kind = _kind(rec)
        seen[kind] = seen.get(kind, 0) + 1
        if kind == "error":
            assert report.outcome == "nothing-to-replay", report.to_json()
            assert "before any model ran" in report.reason
        else:
            assert report.outcome == "identical", report.to_json()
    assert set(seen) == {"risk", "dosing", "no-card", "error"}, seen
    computed = [r for r in trail.records if _kind(r) == "risk" and r.body["outputs"]]
    assert {r.body["service"] for r in computed} == {"ascvd-risk", "cardio-renal-risk"}


def test_a_dosing_fit_is_replayed_not_copied(trail: Trail) -> None:
    """An off-target dosing record compares the refitted outputs and the suggested regimen."""
    rec = next(r for r in trail.records if r.body["hookInstance"] == "dose-1" and r.body["outputs"])
    report = _replay(trail, rec)
    assert report.outcome == "identical"
    assert {c.part for c in report.checks} == {"outputs", "cards"}
    assert rec.body["outputs"]["recommended_dose_mg"] > 0


def test_a_changed_output_is_named(trail: Trail) -> None:
    """A record whose output differs from what its twin and model give is reported with the path."""
    rec = next(r for r in trail.records if _kind(r) == "risk" and r.body["outputs"])
    name = next(iter(rec.body["outputs"]))
    body = json.loads(json.dumps(rec.body))
    body["outputs"][name] += 0.01
    report = _replay(trail, dataclasses.replace(rec, body=body))
    assert report.outcome == "different"
    (bad,) = [c for c in report.checks if not c.identical]
    assert bad.part == "outputs" and bad.difference is not None and name in bad.difference


def test_a_changed_model_file_is_detected(trail: Trail, tmp_path: Path) -> None:
    """An archived model file whose bytes changed is named with its sha256; nothing is replayed."""
    rec = next(r for r in trail.records if r.body["service"] == "ascvd-risk" and r.body["outputs"])
    sha = rec.body["model"]["sha256"]
    archive = ModelArchive(tmp_path / "archive")
    archive.directory.mkdir()
    changed = bytearray(trail.settings.model_archive_dir.joinpath(f"{sha}.onnx").read_bytes())
    changed[-1] ^= 0xFF
    archive.path(sha).write_bytes(bytes(changed))
    report = _replay(trail, rec, archive=archive)
    assert report.outcome == "not-replayable"
    assert "model pce" in report.reason and sha in report.reason and "changed" in report.reason


def test_a_model_no_longer_archived_is_named(trail: Trail, tmp_path: Path) -> None:
    """A record whose model file is in no archive names the model, its version and sha256."""
    rec = next(
        r for r in trail.records if r.body["service"] == "cardio-renal-risk" and _kind(r) == "risk"
    )
    report = _replay(trail, rec, archive=ModelArchive(tmp_path / "empty"))
    assert report.outcome == "not-replayable"
    first = rec.body["model"]
    assert f"model {first['id']} v{first['version']}" in report.reason
    assert first["sha256"] in report.reason


def test_a_model_since_replaced_is_replayed_from_the_archive(trail: Trail) -> None:
    """When the installed file's sha differs, replay still uses the recorded file and says so."""
    rec = next(r for r in trail.records if r.body["service"] == "ascvd-risk" and r.body["outputs"])
    report = _replay(trail, rec, installed={"pce": "0" * 64})
    assert report.outcome == "identical"
    assert any("pce" in n and "0" * 64 in n for n in report.notes)


def _cli(trail: Trail, *args: str) -> subprocess.CompletedProcess[str]:
    return audit_cli(*args, settings=trail.settings)


def test_cli_replay_exits_0_on_an_identical_record(trail: Trail) -> None:
    """twin-cds audit replay SEQ prints the report and exits 0 when byte-identical."""
    rec = next(r for r in trail.records if _kind(r) == "dosing")
    result = _cli(trail, "replay", str(rec.seq))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "identical"


def test_cli_replay_of_an_unknown_record_exits_2(trail: Trail) -> None:
    """A seq with no record is bad input."""
    result = _cli(trail, "replay", "99999")
    assert result.returncode == 2
    assert "no audit record 99999" in result.stderr


class _AlteredTwins:
    """The real twin store, except that every loaded state has one value changed (as an
    attacker who can write the twin store would leave it)."""

    def __init__(self, inner: Any, birth_date: object = "1900-01-01") -> None:
        self._inner = inner
        self._birth_date = birth_date

    def load(self, patient_id: str, version: int | None = None) -> StoredTwin:
        stored: StoredTwin = self._inner.load(patient_id, version)
        state = json.loads(json.dumps(stored.twin_json))
        state["demographics"]["birth_date"] = self._birth_date
        return StoredTwin(stored.version, state)

    def close(self) -> None:
        self._inner.close()


def test_a_changed_twin_version_is_named(trail: Trail) -> None:
    """A twin state that no longer has the recorded content hash is named; nothing is replayed."""
    rec = next(r for r in trail.records if _kind(r) == "risk")
    twins = _AlteredTwins(open_twin_store(trail.settings))
    try:
        report = replay_record(
            rec,
            twins=twins,  # type: ignore[arg-type]
            archive=ModelArchive(trail.settings.model_archive_dir),
            installed={},
        )
    finally:
        twins.close()
    assert report.outcome == "not-replayable"
    assert f"twin version {rec.body['twin']['version']}" in report.reason
    assert rec.body["twin"]["contentHash"] in report.reason


def test_a_twin_version_that_no_longer_validates_is_named(trail: Trail) -> None:
    """A stored state that is not a twin state any more makes the record not replayable."""
    rec = next(r for r in trail.records if _kind(r) == "risk")
    twins = _AlteredTwins(open_twin_store(trail.settings), birth_date=19000101)
    try:
        report = replay_record(
            rec,
            twins=twins,  # type: ignore[arg-type]
            archive=ModelArchive(trail.settings.model_archive_dir),
            installed={},
        )
    finally:
        twins.close()
    assert report.outcome == "not-replayable"
    assert f"twin version {rec.body['twin']['version']} in the store does not load" in (
        report.reason
    )
    assert "demographics.birth_date: Value error, a date must be ISO 8601 text, not int" in (
        report.reason
    )


def test_a_dosing_call_reads_the_pk_history_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record's replay basis is the history the card was computed from, not a re-read."""
    import cds_service.services.vancomycin as vancomycin
    import twin_engine.pk.history as history

    reads: list[int] = []
    real = history.extract_history

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(history, "extract_history", counting)
    monkeypatch.setattr(vancomycin, "extract_history", counting)
    settings = Settings(data_dir=tmp_path / "data", auth_required=False)
    with TestClient(create_app(settings)) as c:
        body = order_sign_call(1, draft_order(500, 24), dialysis=False)
        assert c.post("/cds-services/vancomycin-dosing-sign", json=body).status_code == 200
    log = open_audit_log(settings)
    try:
        (rec,) = log.records()
    finally:
        log.close()
    assert len(reads) == 1
    assert rec.body["replayBasis"]["history"]["doses"]
    assert rec.body["twin"]["version"] == 1 and rec.body["inputs"]
