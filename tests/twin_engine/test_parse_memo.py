"""Remembered parses give the same twin and the same issues as a fresh parse."""

from __future__ import annotations

import copy

from tests.support.fhir import bundle, obs, patient
from twin_engine import build_twin_from_fhir, ingest
from twin_engine.fhir.memo import clear_parse_memo


def test_a_repeated_bundle_gives_the_same_twin_and_issues() -> None:
    """Second ingest of the same data (memo hit) equals the first (memo miss)."""
    bad = obs("o2", "2093-3", 200, "mg/dL")
    bad["valueQuantity"]["value"] = "two hundred"
    data = bundle(patient(), obs("o1", "2093-3", 180, "mg/dL"), bad)
    clear_parse_memo()
    first = ingest(data)
    second = ingest(data)
    assert second == first
    assert len(second.issues) == 1
    assert build_twin_from_fhir(data).content_hash() == build_twin_from_fhir(data).content_hash()


def test_a_changed_resource_is_parsed_again() -> None:
    """A resource whose content changed is not served from the memo."""
    data = bundle(patient(), obs("o1", "2093-3", 180, "mg/dL"))
    before = build_twin_from_fhir(data)
    changed = copy.deepcopy(data)
    changed["entry"][1]["resource"]["valueQuantity"]["value"] = 240
    after = build_twin_from_fhir(changed)
    assert before.observations["total_cholesterol"][-1].value == 180
    assert after.observations["total_cholesterol"][-1].value == 240


def test_malformed_race_extensions_are_ignored_not_fatal() -> None:
    """Race is read from raw extensions: ill-shaped ones are skipped, the patient ingests."""
    from tests.support.fhir import RACE

    bad = patient()
    bad["extension"] = [
        "not-an-object",
        {"url": RACE, "extension": "not-a-list"},
        {"url": RACE, "extension": [7, {"url": "ombCategory", "valueCoding": "x"}]},
    ]
    twin = build_twin_from_fhir(bundle(bad))
    assert twin.demographics.race_omb == ()
    assert twin.demographics.race_recorded


def test_an_instant_before_year_one_in_utc_is_reported_not_a_crash() -> None:
    """Review finding: 0001-01-01T00:00:00+14:00 overflowed; the entry is now skipped."""
    early = obs("o1", "2093-3", 180, "mg/dL", "0001-01-01T00:00:00+14:00")
    twin = build_twin_from_fhir(bundle(patient(), early))
    assert "total_cholesterol" not in twin.observations
    assert any("Observation/o1" in i.reason for i in twin.issues)


def test_contained_that_is_not_a_list_is_not_a_crash() -> None:
    """Review finding: contained: 1 on a MedicationRequest raised TypeError."""
    from tests.support.fhir import med_request

    request = med_request("m1", None, "")
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "#med"}
    request["contained"] = 1
    twin = build_twin_from_fhir(bundle(patient(), request))
    assert twin.medications == {} or all(not v for v in twin.medications.values())


def test_with_the_memo_off_nothing_is_kept_and_results_are_the_same() -> None:
    """The cold-path switch: every parse is fresh, no record is remembered, same twin."""
    from twin_engine.fhir.memo import _memo_records, set_parse_memo

    data = bundle(patient(), obs("o1", "2093-3", 180, "mg/dL"))
    remembered = ingest(data)
    set_parse_memo(False)
    try:
        fresh = ingest(data)
        assert len(_memo_records) == 0
    finally:
        set_parse_memo(True)
    assert fresh == remembered
