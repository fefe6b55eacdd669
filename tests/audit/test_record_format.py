"""Stored formats of hook records: every format reads as recorded, verifies and replays.

Format 2 (``cds_service.audit.stored``) is what this release writes; formats 0 and 1 are
what earlier releases wrote. A chain holds all three at once after an upgrade.
"""

# S608: the SQL built here is the attacker's, from constants of our own.

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from cds_service.audit.chain import canonical_json, record_hash
from cds_service.audit.log import AuditEntry, StoredAuditRecord
from cds_service.audit.parts import MARK
from cds_service.audit.replay import ModelArchive, installed_shas, replay_record
from cds_service.audit.sql import open_audit_log
from cds_service.audit.stored import FORMAT_KEY, read_form, record_format, stored_form
from cds_service.settings import Settings
from cds_service.stores import open_twin_store
from onnx_models.registry import ModelRegistry
from tests.audit.conftest import STORES, entry
from tests.audit.stores import StoreSpec, audit_cli, service_settings
from tests.audit.test_replay import FIXED_TODAY
from tests.conftest import hook_request, prefetch_from_bundle
from tests.support.vancomycin import draft_order, order_sign_call
from twin_cds.app import create_app

RELEASE = Path(__file__).parent / "data" / "release_records.json"
FORMATS = (1, 0, 2)  # the order they are written in: old releases, then this one


def _as_recorded(body: dict[str, Any]) -> dict[str, Any]:
    """A body without its format marker: what the service recorded."""
    return {k: v for k, v in body.items() if k not in (MARK, FORMAT_KEY)}


@dataclasses.dataclass(frozen=True)
class Written:
    settings: Settings
    #: seq -> (the format it was written in, the body the service recorded)
    recorded: dict[int, tuple[int, dict[str, Any]]]


@pytest.fixture(scope="module", params=STORES)
def written(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo_bundles: list[dict[str, Any]],
) -> Iterator[Written]:
    """Risk and dosing calls of the real service, written in format 1, then 0, then 2."""
    data = tmp_path_factory.mktemp("formats") / "data"
    with service_settings(request.param, data) as settings:
        yield _write(settings, demo_bundles)


def _write(settings: Settings, demo_bundles: list[dict[str, Any]]) -> Written:
    recorded: dict[int, tuple[int, dict[str, Any]]] = {}
    with TestClient(create_app(settings)) as c:
        rt = c.app.state.runtime  # type: ignore[attr-defined]
        c.app.state.runtime = dataclasses.replace(rt, today=lambda: FIXED_TODAY)  # type: ignore[attr-defined]
        audit = rt.audit
        record_many = audit.record_many

        # Hook calls reach the trail through the group committer's batches.
        def keep(entries: Sequence[AuditEntry]) -> list[StoredAuditRecord]:
            recs = record_many(entries)
            for e, rec in zip(entries, recs, strict=True):
                recorded[rec.seq] = (audit.record_format, e.to_json())
            return recs

        audit.record_many = keep
        for fmt in FORMATS:
            audit.record_format = fmt
            for n, bundle in enumerate(demo_bundles[:2]):
                pf = prefetch_from_bundle(bundle)
                for service in ("ascvd-risk", "cardio-renal-risk"):
                    body = hook_request(pf["patient"]["id"], pf, hookInstance=f"{fmt}-{n}")
                    assert c.post(f"/cds-services/{service}", json=body).status_code == 200
            for n, draft in enumerate((draft_order(500, 24), draft_order(1250, 12))):
                call = order_sign_call(10 * fmt + n, draft, dialysis=False)
                assert c.post("/cds-services/vancomycin-dosing-sign", json=call).status_code == 200
    return Written(settings, recorded)


def _stored_bodies(settings: Settings) -> dict[int, dict[str, Any]]:
    log = open_audit_log(settings)
    try:
        with log._read() as tx:
            rows = tx.rows("SELECT seq, body FROM audit_chain WHERE kind = 'hook'")
    finally:
        log.close()
    return {int(seq): orjson.loads(body) for seq, body in rows}


def test_the_trail_holds_records_of_every_format(written: Written) -> None:
    """Each call is stored in the format it was written in (the fixture's premise)."""
    stored = _stored_bodies(written.settings)
    formats = {seq: record_format(stored[seq]) for seq in written.recorded}
    for seq, (fmt, _) in written.recorded.items():
        # Format 1 marks only records some card material of which is a part.
        assert formats[seq] == fmt or (fmt == 1 and formats[seq] == 0), seq
    assert set(formats.values()) == {0, 1, 2}
    assert all(
        isinstance(stored[s]["inputs"], dict) for s, f in formats.items() if f == 2
    )  # tables


def test_every_record_reads_as_the_service_recorded_it(written: Written) -> None:
    """get, records and query give every record's body exactly as recorded, whatever its format."""
    log = open_audit_log(written.settings)
    try:
        by_get = {seq: log.get(seq) for seq in written.recorded}
        by_records = {r.seq: r for r in log.records()}
    finally:
        log.close()
    for seq, (_, body) in written.recorded.items():
        got = by_get[seq]
        assert got is not None
        assert canonical_json(_as_recorded(got.body)) == canonical_json(body), seq
        assert canonical_json(by_records[seq].body) == canonical_json(got.body), seq


def test_a_chain_of_mixed_formats_verifies(written: Written) -> None:
    """Records of formats 0, 1 and 2 on one chain verify, parts included."""
    log = open_audit_log(written.settings)
    try:
        report = log.verify()
    finally:
        log.close()
    assert report.ok, report.to_json()
    assert report.records >= len(written.recorded)


def test_every_record_replays_byte_identical_in_every_format(written: Written) -> None:
    """Risk and dosing records replay byte-identical whether written in format 0, 1 or 2."""
    log = open_audit_log(written.settings)
    twins = open_twin_store(written.settings)
    try:
        replayed: dict[int, set[str]] = {}
        for rec in log.records():
            report = replay_record(
                rec,
                twins=twins,
                archive=ModelArchive(written.settings.model_archive_dir),
                installed=installed_shas(ModelRegistry.load()),
            )
            assert report.outcome == "identical", report.to_json()
            replayed.setdefault(written.recorded[rec.seq][0], set()).add(rec.body["service"])
    finally:
        twins.close()
        log.close()
    services = {"ascvd-risk", "cardio-renal-risk", "vancomycin-dosing-sign"}
    assert replayed == dict.fromkeys(FORMATS, services)


def test_audit_show_gives_a_format_2_record_whole_and_its_hash_matching(written: Written) -> None:
    """twin-cds audit show prints a format 2 record as recorded, its hash recomputed from it."""
    seq = max(s for s, (fmt, body) in written.recorded.items() if body["cards"])
    result = audit_cli("show", str(seq), settings=written.settings)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["check"] == {"hashMatches": True, "linksToPrevious": True}
    assert shown["record"]["body"][FORMAT_KEY] == 2
    expected = written.recorded[seq][1]
    assert canonical_json(_as_recorded(shown["record"]["body"])) == canonical_json(expected)


# -- records of the release before, as it stored them


def _load_release(log: Any) -> list[dict[str, Any]]:
    """The frozen rows, parts and card index, put into ``log``'s store as they were."""
    data = json.loads(RELEASE.read_text())
    rows = data["rows"]

    def work(tx: Any) -> None:
        for r in rows:
            tx.run(
                "INSERT INTO audit_chain (seq, kind, recorded_at, hook_instance, service_id, "
                "patient_id, status, model_id, model_version, body, prev_hash, record_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [r[k] for k in list(r)[:12]],
            )
        for name, content in data["parts"].items():
            tx.run("INSERT INTO audit_part VALUES (?, ?)", (name, content))
        for card in data["cards"]:
            tx.run("INSERT INTO audit_card VALUES (?, ?, ?)", card)
        tx.run(
            "UPDATE audit_head SET seq = ?, record_hash = ? WHERE id = 1",
            (rows[-1]["seq"], rows[-1]["record_hash"]),
        )

    log._transaction(work)
    return list(rows)


def test_records_of_the_release_before_read_and_hash_as_then(store: StoreSpec) -> None:
    """The release's stored rows read back to the same bytes, and recompute to their hashes."""
    log = store.open()
    rows = _load_release(log)
    assert {record_format(json.loads(r["body"])) for r in rows} == {0, 1}
    for r in rows:
        rec = log.get(r["seq"])
        assert rec is not None
        assert hashlib.sha256(canonical_json(rec.body)).hexdigest() == r["readSha256"]
        assert (
            record_hash(rec.prev_hash, rec.recorded_at, rec.body, seq=rec.seq, kind="hook")
            == (r["record_hash"])
        )


def test_format_2_records_chain_on_after_the_release_before(store: StoreSpec) -> None:
    """New records appended after the release's verify together with them."""
    log = store.open()
    _load_release(log)
    log.record(entry(4, inputs=_inputs(8)))
    assert record_format(_stored(store, 4)) == 2
    assert log.verify().ok


# -- format 2's rules


def _inputs(n: int) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "name": f"feature_{i}",
            "value": float(i),
            "unit": "mg/dL",
            "time": "2025-01-02T00:00:00+00:00",
            "sources": [f"Observation/o-{i}"],
            "quality": "ok",
        }
        for i in range(n)
    )


def _stored(store: StoreSpec, seq: int) -> dict[str, Any]:
    ((body,),) = store.rows(f"SELECT body FROM audit_chain WHERE seq = {seq}")  # noqa: S608
    return dict(orjson.loads(body))


def test_a_changed_input_names_part_is_caught_by_verify(store: StoreSpec) -> None:
    """Rewriting the shared names and units of the inputs breaks verify at its first record."""
    log = store.open()
    for n in range(1, 4):
        log.record(entry(n, inputs=_inputs(8)))
    assert "$part" in _stored(store, 1)["inputs"]["$table"]
    store.raw_sql("UPDATE audit_part SET content = REPLACE(content, 'mg/dL', 'mmol/L')")
    report = log.verify()
    assert report.first_bad is not None and report.first_bad.seq == 1
    assert "does not match its sha256" in report.first_bad.reason


def test_inputs_of_two_shapes_stay_a_list_and_read_back() -> None:
    """Inputs whose entries differ in their fields are not a table; the record reads back."""
    inputs = (*_inputs(3), {"name": "sex", "value": "male", "unit": None})
    body = entry(1, inputs=inputs).to_json()
    w = stored_form(body)
    stored = w.body
    assert record_format(stored) == 2 and isinstance(stored["inputs"], list)
    parsed = {n: orjson.loads(c) for n, c in w.parts.items()}
    assert _as_recorded(read_form(stored, parsed)) == body


def test_a_body_that_would_not_read_back_is_stored_in_format_1() -> None:
    """A resource that looks like a reference of ours keeps its record out of format 2."""
    card = {
        "uuid": "card-1",
        "summary": "s",
        "overrideReasons": [{"code": f"reason-{i}", "display": "x" * 20} for i in range(6)],
        "suggestions": [{"actions": [{"type": "create", "resource": {"$part": "0" * 64}}]}],
    }
    body = entry(1, cards=(card,)).to_json()
    w = stored_form(body)
    stored = w.body
    assert record_format(stored) == 1
    parsed = {n: orjson.loads(c) for n, c in w.parts.items()}
    assert _as_recorded(read_form(stored, parsed)) == body


def test_a_record_whose_part_was_deleted_reads_as_damaged(store: StoreSpec) -> None:
    """Reads report a record whose part is gone as damaged (no failure); verify names it."""
    log = store.open()
    log.record(entry(1, inputs=_inputs(8)))
    store.raw_sql("DELETE FROM audit_part")
    rec = log.get(1)
    assert rec is not None and rec.damage is not None and "does not read back" in rec.damage
    assert [r.damage for r in log.records()] == [rec.damage]
    report = log.verify()
    assert report.first_bad is not None and report.first_bad.seq == 1
    assert "is missing" in report.first_bad.reason
