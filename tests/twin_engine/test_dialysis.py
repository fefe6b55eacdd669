"""The dialysis rule: inferred from conditions, procedures or encounters; absent means not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from twin_engine.dialysis import NOT_ON_DIALYSIS, on_dialysis

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
NOW = datetime(2024, 3, 10, 12, tzinfo=UTC)


def _condition(system: str, code: str, clinical: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "c",
        "clinicalStatus": {"coding": [{"code": clinical}]},
        "code": {"coding": [{"system": system, "code": code}]},
    }


def _procedure(days_ago: float) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "p",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "302497006"}]},
        "performedDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
    }


def _encounter(days_ago: float, status: str = "finished") -> dict[str, Any]:
    start = NOW - timedelta(days=days_ago)
    return {
        "resourceType": "Encounter",
        "id": "e",
        "status": status,
        "type": [
            {"coding": [{"system": SNOMED, "code": "265764009", "display": "Renal dialysis"}]}
        ],
        "period": {"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()},
    }


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param([_condition(ICD10, "Z99.2")], True, id="condition-dependence-z99.2"),
        pytest.param([_condition(ICD10, "N18.6")], True, id="condition-esrd-n18.6"),
        pytest.param([_condition(SNOMED, "46177005")], True, id="condition-esrd-snomed"),
        pytest.param([_procedure(days_ago=3)], True, id="procedure-3-days-ago"),
        pytest.param([_encounter(days_ago=10)], True, id="encounter-10-days-ago"),
        pytest.param([_encounter(days_ago=90, status="in-progress")], True, id="encounter-now"),
        pytest.param([], False, id="nothing-recorded"),
        pytest.param([_procedure(days_ago=45)], False, id="procedure-45-days-ago"),
        pytest.param([_encounter(days_ago=60)], False, id="encounter-60-days-ago"),
        pytest.param([_condition(ICD10, "Z99.2", "resolved")], False, id="resolved-transplant"),
    ],
)
def test_dialysis_is_inferred_from_the_record(
    records: list[dict[str, Any]], expected: bool
) -> None:
    """A recent session or an active ESRD/dependence condition says dialysis; else not."""
    status = on_dialysis(records, as_of=NOW)
    assert status.on_dialysis is expected
    assert bool(status.evidence) is expected


def test_absent_dialysis_is_stated_in_one_line() -> None:
    """Nothing recorded: not on dialysis, and the statement the card prints says so."""
    assert on_dialysis([], as_of=NOW).statement == NOT_ON_DIALYSIS


def test_evidence_names_the_record_and_code() -> None:
    """The card can show which record said dialysis."""
    status = on_dialysis([_procedure(days_ago=1)], as_of=NOW)
    assert status.evidence == ("Procedure/p (302497006)",)
