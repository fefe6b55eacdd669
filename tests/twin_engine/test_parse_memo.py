"""Remembered parses give the same twin and the same issues as a fresh parse."""

from __future__ import annotations

import copy

from tests.twin_engine.fhir import bundle, obs, patient
from twin_engine import build_twin_from_fhir, ingest
from twin_engine.ingest import clear_parse_memo


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
    from tests.twin_engine.fhir import RACE

    bad = patient()
    bad["extension"] = [
        "not-an-object",
        {"url": RACE, "extension": "not-a-list"},
        {"url": RACE, "extension": [7, {"url": "ombCategory", "valueCoding": "x"}]},
    ]
    twin = build_twin_from_fhir(bundle(bad))
    assert twin.demographics.race_omb == ()
    assert twin.demographics.race_recorded
