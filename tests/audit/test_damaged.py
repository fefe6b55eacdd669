"""A stored record whose body is not JSON (changed after it was hashed): every auditor
read reports it as damaged (its seq, why, the chain's status there) instead of failing,
on SQLite and PostgreSQL alike: the API, the console, the exports, stats, `audit show`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B import get_fhir_model_class

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.audit.chain import CHAIN_BROKEN
from cds_service.audit.log import ChainedAuditLog
from cds_service.settings import Settings
from ehr_sim.authorization import public_jwk
from tests.audit.conftest import entry
from tests.audit.stores import StoreSpec, audit_cli
from tests.audit.test_api import AUDITOR_KEY, IDP, _get, _jwks
from tests.audit.test_api import auditor_token as _auditor_token
from tests.audit.test_console import KEY, Provider, _serve, sign_in
from twin_cds.app import create_app

BASE = "http://127.0.0.1:8000"
TENANT_IDP = "https://idp.example/hospital-a"
FEEDBACK = {"card": "card-1", "outcome": "accepted", "outcomeTimestamp": "2026-11-27T10:00:00Z"}
#: seq 1 hook (card-1), 2 its feedback, 3 a hook, 4 a hook; 2 and 3 are then damaged.
DAMAGED = {2: "body is not a JSON object", 3: "body is not JSON"}


def auditor_token(**claims: Any) -> str:
    return _auditor_token(aud=f"{BASE}/audit", **claims)


def _damaged(seq: int) -> dict[str, Any]:
    return {"seq": seq, "reason": DAMAGED[seq], "chain": CHAIN_BROKEN}


@dataclass(frozen=True)
class Trail:
    settings: Settings
    store: StoreSpec

    def store_args(self) -> list[str]:
        if self.settings.database_url:
            return ["--database-url", self.settings.database_url]
        return ["--data-dir", str(self.settings.data_dir)]


@pytest.fixture(scope="module")
def console_provider() -> Iterator[Provider]:
    """The simulator signing in an auditor of no tenant (the deployment's own)."""
    yield from _serve((("role", "auditor"),))


@pytest.fixture()
def trail(store: StoreSpec, tmp_path: Path, console_provider: Provider) -> Iterator[Trail]:
    """Four records written by the service's log on the store, two then damaged."""
    jwk = {**public_jwk(KEY), "use": "sig"}
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=store.pg_url,
        public_base_url=BASE,
        auditors=(
            AuditorIssuerConfig(iss=IDP, jwks=_jwks(AUDITOR_KEY, "idp-1")),
            AuditorIssuerConfig(
                iss=TENANT_IDP, jwks=_jwks(AUDITOR_KEY, "idp-1"), tenant="hospital-a"
            ),
            AuditorIssuerConfig(
                iss=console_provider.url, jwks={"keys": [jwk]}, algorithms=("RS256",)
            ),
        ),
        audit_console_issuer=console_provider.url,
        audit_console_aud=console_provider.url + "/fhir",
    )
    on = store if store.kind == "postgres" else StoreSpec("sqlite", sqlite_path=settings.audit_db)
    with TestClient(create_app(settings), base_url=BASE) as c:
        log: ChainedAuditLog = c.app.state.runtime.audit  # type: ignore[attr-defined]
        log.record(entry(1))
        log.record_feedback("ascvd-risk", [FEEDBACK], "https://ehr.example")
        log.record(entry(3))
        log.record(entry(4))
    on.raw_sql(
        "UPDATE audit_chain SET body = '[1, 2]' WHERE seq = 2",
        "UPDATE audit_chain SET body = '{not json' WHERE seq = 3",
    )
    yield Trail(settings, on)


@pytest.fixture()
def api(trail: Trail) -> Iterator[TestClient]:
    with TestClient(create_app(trail.settings), base_url=BASE) as c:
        yield c


def test_the_record_list_names_each_damaged_record(api: TestClient) -> None:
    """GET /audit/records lists every record, the damaged ones with seq, reason and chain."""
    got = _get(api, "/audit/records", auditor_token(), kind="any", limit=4)
    assert got.status_code == 200, got.text
    records = got.json()["records"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert [(r.get("damaged"), r["body"] is None) for r in records] == [
        (None, False),
        (_damaged(2), True),
        (_damaged(3), True),
        (None, False),
    ]


def test_one_damaged_record_is_reported_with_its_chain_check(api: TestClient) -> None:
    """GET /audit/records/{seq}: the damage, no hash match, the link to the record before."""
    got = _get(api, "/audit/records/3", auditor_token())
    assert got.status_code == 200, got.text
    answer = got.json()
    assert answer["record"]["damaged"] == _damaged(3)
    assert answer["check"] == {"hashMatches": False, "linksToPrevious": True}


def test_a_damaged_feedback_record_is_named_on_its_card(api: TestClient) -> None:
    """The hook record's feedback names the damaged feedback record instead of failing."""
    got = _get(api, "/audit/records/1", auditor_token())
    assert got.status_code == 200, got.text
    assert got.json()["feedback"] == {"card-1": [_damaged(2)]}


def test_a_tenant_bound_auditor_gets_its_records_without_the_damaged_ones(
    api: TestClient,
) -> None:
    """A damaged body proves no tenant: a tenant's query answers its intact records."""
    token = auditor_token(iss=TENANT_IDP)
    got = _get(api, "/audit/records", token, kind="hook", limit=2)
    assert got.status_code == 200, got.text
    assert [r["seq"] for r in got.json()["records"]] == [1, 4]


def test_replaying_a_damaged_record_says_why_it_cannot(api: TestClient) -> None:
    """GET /audit/records/{seq}/replay of a damaged record: not replayable, and why."""
    got = _get(api, "/audit/records/3/replay", auditor_token())
    assert got.status_code == 200, got.text
    assert (got.json()["outcome"], got.json()["reason"]) == (
        "not-replayable",
        f"record 3: body is not JSON; the chain is {CHAIN_BROKEN}",
    )


def test_the_fhir_export_carries_a_security_alert_per_damaged_record(api: TestClient) -> None:
    """GET /audit/export: a valid AuditEvent (DCM 110113, serious failure) per damaged record."""
    got = _get(api, "/audit/export", auditor_token(), kind="any")
    assert got.status_code == 200, got.text
    resources = [json.loads(line) for line in got.text.splitlines()]
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    alerts = [r for r in resources if r.get("type", {}).get("code") == "110113"]
    assert [(a["id"], a["outcome"]) for a in alerts] == [
        ("twin-cds-audit-2", "8"),
        ("twin-cds-audit-3", "8"),
    ]
    assert alerts[1]["outcomeDesc"] == f"record 3: body is not JSON; the chain is {CHAIN_BROKEN}"


def test_stats_count_the_intact_records_and_name_the_damaged(api: TestClient) -> None:
    """GET /audit/stats: the cards of intact records, and the damaged records listed."""
    got = _get(api, "/audit/stats", auditor_token())
    assert got.status_code == 200, got.text
    stats = got.json()
    assert (stats["total"]["cards"], stats["damaged"]) == (2, [_damaged(2), _damaged(3)])


def test_console_pages_and_exports_name_the_damaged_record(api: TestClient) -> None:
    """The console's list, record, stats and both exports say DAMAGED for seq 3."""
    assert sign_in(api).status_code == 303
    damage = "DAMAGED: body is not JSON"
    listing = api.get("/audit/ui", params={"kind": "any"})
    record = api.get("/audit/ui/records/3")
    stats = api.get("/audit/ui/stats")
    ndjson = api.get("/audit/ui/export.ndjson")
    table = api.get("/audit/ui/export.csv")
    assert [r.status_code for r in (listing, record, stats, ndjson, table)] == [200] * 5
    assert damage in listing.text
    assert "DAMAGED: record 3: body is not JSON" in record.text
    assert "DAMAGED: record 3: body is not JSON" in stats.text
    assert "twin-cds-audit-3" in ndjson.text
    rows = {row[0]: row for row in csv.reader(io.StringIO(table.text))}
    assert rows["3"][5].startswith(damage)


def test_audit_show_reports_the_damage_and_exits_tampered(trail: Trail) -> None:
    """`twin-cds audit show 3`: the record with its damage, DAMAGED on stderr, exit 1."""
    result = audit_cli("show", "3", *trail.store_args())
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["record"]["damaged"] == _damaged(3)
    assert "DAMAGED: record 3: body is not JSON" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt", ["records", "fhir"])
def test_audit_export_writes_every_record(trail: Trail, fmt: str) -> None:
    """`twin-cds audit export` (records and FHIR) writes all four, the damaged named."""
    result = audit_cli("export", "--format", fmt, *trail.store_args())
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    if fmt == "records":
        assert [r.get("damaged") for r in lines] == [None, _damaged(2), _damaged(3), None]
    else:
        assert [r["id"] for r in lines if r.get("type", {}).get("code") == "110113"] == [
            "twin-cds-audit-2",
            "twin-cds-audit-3",
        ]


def test_audit_stats_names_the_damaged_records(trail: Trail) -> None:
    """`twin-cds audit stats` counts the intact records and lists the damaged ones."""
    result = audit_cli("stats", "--format", "json", *trail.store_args())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["damaged"] == [_damaged(2), _damaged(3)]
