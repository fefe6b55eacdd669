"""Follow-through statistics equal a hand count on a seeded history (CLI, library, API)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cds_service.audit.auth import AuditorIssuerConfig
from cds_service.audit.log import ChainedAuditLog, ModelUse
from cds_service.audit.sql import SqliteAuditLog
from cds_service.audit.stats import card_kind, follow_through
from cds_service.settings import Settings
from tests.audit.conftest import entry
from tests.audit.stores import audit_cli
from tests.audit.test_api import AUDITOR_KEY, IDP, _jwks, _token, auditor_token
from twin_cds.app import create_app

EHR = "https://ehr.example"
IDP_B = "https://idp.hospital-b.example"
KEY_B = ec.generate_private_key(ec.SECP384R1())

#: When each record of the seeded history is written (hooks, then feedback).
TIMES = [
    "2026-01-10T09:00:00.000000+00:00",
    "2026-01-20T09:00:00.000000+00:00",
    "2026-02-05T09:00:00.000000+00:00",
    "2026-02-06T09:00:00.000000+00:00",
    "2026-02-07T09:00:00.000000+00:00",
]


def _card(uuid: str, summary: str, action: str | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"uuid": uuid, "summary": summary}
    if action:
        card["suggestions"] = [{"uuid": f"s-{uuid}", "actions": [{"type": action}]}]
    return card


def _reason(code: str) -> dict[str, Any]:
    return {"reason": {"code": code, "system": "http://example.org/reasons"}}


def seed(log: ChainedAuditLog) -> None:
    """Five calls in two months and two tenants, five cards, five feedbacks (one repeated card)."""
    pce, prevent = ModelUse("pce", "1.0.0", "a" * 64), ModelUse("prevent", "1.0.0", "b" * 64)
    vanco = ModelUse("vancomycin_goti2018", "2018.1", "c" * 64)
    log.record(
        entry(1, cards=(_card("c1", "10-year ASCVD risk 12%"), _card("c2", "Order", "create")))
    )
    log.record(
        entry(2, service_id="cardio-renal-risk", model=prevent, cards=(_card("c3", "PREVENT"),))
    )
    log.record(
        entry(
            3,
            service_id="vancomycin-dosing",
            model=vanco,
            client_tenant="hospital-b",
            cards=(_card("c4", "Vancomycin 500 mg", "update"),),
        )
    )
    log.record(
        entry(
            4,
            model=pce,
            client_tenant="hospital-b",
            cards=(_card("c5", "10-year ASCVD risk not computed: missing HDL"),),
        )
    )
    log.record(entry(5, status="no-card", cards=()))
    fb: list[tuple[str, dict[str, Any]]] = [
        ("ascvd-risk", {"card": "c1", "outcome": "accepted", "outcomeTimestamp": "t1"}),
        (
            "ascvd-risk",
            {
                "card": "c2",
                "outcome": "overridden",
                "outcomeTimestamp": "t2",
                "overrideReason": _reason("cds-not-applicable"),
            },
        ),
        ("cardio-renal-risk", {"card": "c3", "outcome": "overridden", "outcomeTimestamp": "t3"}),
        (
            "vancomycin-dosing",
            {
                "card": "c4",
                "outcome": "overridden",
                "outcomeTimestamp": "t4",
                "overrideReason": _reason("recipient-disagrees-evidence"),
            },
        ),
        # A later change of mind: the first response is the one counted.
        ("vancomycin-dosing", {"card": "c4", "outcome": "accepted", "outcomeTimestamp": "t5"}),
    ]
    for service, e in fb:
        assert log.record_feedback(service, [e], EHR).stored == 1


def _clock() -> Callable[[], str]:
    times = itertools.chain(TIMES, itertools.repeat("2026-02-08T09:00:00.000000+00:00"))
    return lambda: next(times)


@pytest.fixture()
def log(tmp_path: Path) -> Iterator[SqliteAuditLog]:
    log = SqliteAuditLog(tmp_path / "audit.sqlite", checkpoint_every=0, clock=_clock())
    seed(log)
    yield log
    log.close()


def _counts(group: dict[str, Any]) -> tuple[int, int, int, int]:
    return group["cards"], group["accepted"], group["overridden"], group["noResponse"]


def _by(stats: dict[str, Any], dim: str) -> dict[str, tuple[int, int, int, int]]:
    return {g["key"]: _counts(g) for g in stats["groups"][dim]}


def test_totals_and_reasons_equal_the_hand_count(log: SqliteAuditLog) -> None:
    """5 cards: 1 accepted, 3 overridden (one per reason, one uncoded), 1 without response."""
    stats = follow_through(log).to_json()
    assert _counts(stats["total"]) == (5, 1, 3, 1)
    assert stats["total"]["overrideReasons"] == {
        "cds-not-applicable": 1,
        "no-reason": 1,
        "recipient-disagrees-evidence": 1,
    }
    assert stats["total"]["acceptedRate"] == pytest.approx(1 / 5)
    assert stats["total"]["noResponseRate"] == pytest.approx(1 / 5)


def test_groups_equal_the_hand_count(log: SqliteAuditLog) -> None:
    """Per service, model version, card kind, tenant and month, as counted by hand."""
    stats = follow_through(log).to_json()
    assert _by(stats, "service") == {
        "ascvd-risk": (3, 1, 1, 1),
        "cardio-renal-risk": (1, 0, 1, 0),
        "vancomycin-dosing": (1, 0, 1, 0),
    }
    assert _by(stats, "model") == {
        "pce@1.0.0": (3, 1, 1, 1),
        "prevent@1.0.0": (1, 0, 1, 0),
        "vancomycin_goti2018@2018.1": (1, 0, 1, 0),
    }
    assert _by(stats, "card") == {
        "result": (2, 1, 1, 0),
        "order-suggestion": (1, 0, 1, 0),
        "regimen-change": (1, 0, 1, 0),
        "not-computed": (1, 0, 0, 1),
    }
    assert _by(stats, "tenant") == {"hospital-a": (3, 1, 2, 0), "hospital-b": (2, 0, 1, 1)}
    assert _by(stats, "month") == {"2026-01": (3, 1, 2, 0), "2026-02": (2, 0, 1, 1)}


def test_since_and_tenant_narrow_the_cards(log: SqliteAuditLog) -> None:
    """--since counts the cards sent from then on; a tenant counts its own cards only."""
    since = follow_through(log, since=datetime(2026, 2, 1, tzinfo=UTC)).to_json()
    assert _counts(since["total"]) == (2, 0, 1, 1)
    tenant = follow_through(log, tenant="hospital-a").to_json()
    assert _counts(tenant["total"]) == (3, 1, 2, 0)


def test_card_kinds_of_real_cards() -> None:
    """A risk card without a number reads as not-computed, a dosing problem card too."""
    assert card_kind({"summary": "Cardiovascular risk not computed: missing HDL"}) == "not-computed"
    assert (
        card_kind({"summary": "Vancomycin AUC not predicted: the data do not allow it"})
        == "not-computed"
    )
    assert card_kind({"summary": "PREVENT 10-y CVD 7.1%"}) == "result"


def test_cli_stats_json_and_table(tmp_path: Path) -> None:
    """twin-cds audit stats prints the same counts as JSON and as a table."""
    data = tmp_path / "data"
    log = SqliteAuditLog(data / "audit.sqlite", checkpoint_every=0, clock=_clock())
    seed(log)
    log.close()
    result = audit_cli(
        "stats", "--data-dir", str(data), "--format", "json", "--since", "2026-02-01T00:00:00+00:00"
    )
    assert result.returncode == 0, result.stderr
    assert _counts(json.loads(result.stdout)["total"]) == (2, 0, 1, 1)
    table = audit_cli("stats", "--data-dir", str(data), "--by", "tenant")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["hospital-b"][1:3] == ["2", "0"]
    assert rows["(all)"][1] == "5"


def test_api_stats_are_bound_to_the_auditors_tenant(tmp_path: Path) -> None:
    """A tenant-bound auditor's statistics count its tenant's cards; the read is on the chain."""
    settings = Settings(
        data_dir=tmp_path / "data",
        public_base_url="http://testserver",
        auditors=(
            AuditorIssuerConfig(iss=IDP, jwks=_jwks(AUDITOR_KEY, "idp-1")),
            AuditorIssuerConfig(iss=IDP_B, jwks=_jwks(KEY_B, "b-1"), tenant="hospital-b"),
        ),
    )
    with TestClient(create_app(settings)) as c:
        log: ChainedAuditLog = c.app.state.runtime.audit  # type: ignore[attr-defined]
        seed(log)
        everyone = c.get("/audit/stats", headers={"Authorization": f"Bearer {auditor_token()}"})
        token_b = _token(
            KEY_B, "b-1", iss=IDP_B, aud="http://testserver/audit", sub="bob", role="auditor"
        )
        only_b = c.get("/audit/stats", headers={"Authorization": f"Bearer {token_b}"})
        anonymous = c.get("/audit/stats")
        reads = [r for r in log.records(kind="auditor-read") if r.body["action"] == "stats"]
    assert everyone.status_code == 200 and only_b.status_code == 200
    assert _counts(everyone.json()["total"]) == (5, 1, 3, 1)
    assert _counts(only_b.json()["total"]) == (2, 0, 1, 1)
    assert anonymous.status_code == 401
    assert [r.body["query"]["tenant"] for r in reads] == [None, "hospital-b"]
