"""Repeating card material is stored once, read back as sent, and checked by verify."""

# S608: the SQL built here is the attacker's, from constants of our own.

from __future__ import annotations

from typing import Any

import orjson

from cds_service.audit.log import canonical_json, record_hash
from cds_service.audit.parts import join_parts, split_parts
from tests.audit.conftest import entry
from tests.audit.stores import StoreSpec

REASONS = [
    {"system": "https://twin-cds.example/override-reason", "code": c, "display": d}
    for c, d in (
        ("patient-declines", "Patient declines"),
        ("not-applicable", "Does not apply to this patient"),
        ("already-addressed", "Already addressed"),
    )
]
MODEL_TEXT = "**Model**\n" + "Pooled Cohort Equations v1.0.0: intended use and population. " * 5


def _card(n: int) -> dict[str, Any]:
    return {
        "uuid": f"card-{n}",
        "summary": f"10-year ASCVD risk {n}.0%",
        "indicator": "warning",
        "detail": f"Risk {n}.0% for this patient.\n\n{MODEL_TEXT}\n\nshort tail",
        "source": {"label": "twin-cds · Pooled Cohort Equations v1.0.0"},
        "overrideReasons": REASONS,
    }


def test_split_then_join_gives_the_cards_back_exactly() -> None:
    """The stored form names its parts; joining them gives the body as recorded."""
    body = entry(1, cards=(_card(1),)).to_json() | {"cardStorage": "parts"}
    stored, parts = split_parts(body)
    # The reasons and the long model paragraph; the short source stays inline.
    assert len(parts) == 2
    assert stored["cards"][0]["source"] == body["cards"][0]["source"]
    assert set(stored["cards"][0]["overrideReasons"]) == {"$part"}
    assert join_parts(stored, {n: orjson.loads(c) for n, c in parts.items()}) == body
    assert split_parts(stored)[0] == stored  # the stored form is its own stored form


def test_a_repeated_card_costs_its_varying_part_only(store: StoreSpec) -> None:
    """Ten calls share one copy of the reasons and the model text; reads are as sent."""
    log = store.open()
    for n in range(1, 11):
        log.record(entry(n, cards=(_card(n),)))
    assert store.rows("SELECT COUNT(*) FROM audit_part") == [(2,)]
    stored = [len(r[0]) for r in store.rows("SELECT body FROM audit_chain ORDER BY seq")]
    as_sent = [len(canonical_json(r.body)) for r in log.records()]
    # Each record keeps 2 references (~75 bytes each) instead of ~640 bytes of text.
    assert all(a - s > 400 for s, a in zip(stored, as_sent, strict=True))
    assert [r.body["cards"] for r in log.records()] == [[_card(n)] for n in range(1, 11)]
    assert log.verify().ok


def test_a_read_record_still_proves_its_hash(store: StoreSpec) -> None:
    """A record read with its cards as sent recomputes to its stored hash."""
    log = store.open()
    log.record(entry(1, cards=(_card(1),)))
    rec = log.get(1)
    assert rec is not None and rec.body["cards"] == [_card(1)]
    assert record_hash(rec.prev_hash, rec.recorded_at, rec.body, seq=1, kind="hook") == (
        rec.record_hash
    )


def test_a_changed_part_is_caught_by_verify(store: StoreSpec) -> None:
    """Rewriting shared card text breaks verify at the first record that names it."""
    log = store.open()
    for n in range(1, 4):
        log.record(entry(n, cards=(_card(n),)))
    log.record(entry(4))  # a card without shared material
    store.raw_sql(
        "UPDATE audit_part SET content = REPLACE(content, 'Patient declines', 'Clinician agrees')"
    )
    report = log.verify()
    assert report.first_bad is not None and report.first_bad.seq == 1
    assert "does not match its sha256" in report.first_bad.reason
