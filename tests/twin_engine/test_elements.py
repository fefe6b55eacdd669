"""The Observation fast path accepts only what fhir.resources accepts, with the same values."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import synthea_bundles
from tests.support.fhir import bundle, obs, patient
from twin_engine import ingest
from twin_engine.fhir.elements import ObservationFields, wellformed_observation
from twin_engine.fhir.memo import clear_parse_memo
from twin_engine.fhir.records import OBSERVATION_FIELDS as _OBSERVATION_FIELDS


def _projection(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k in _OBSERVATION_FIELDS}


def _slow(raw: dict[str, Any]) -> ObservationFields:
    """What fhir.resources makes of the same projection (raises when it refuses it)."""
    model = Observation.model_validate(_projection(raw))
    period = model.effectivePeriod
    return ObservationFields(
        str(model.status),
        model.effectiveDateTime,
        model.effectiveInstant,
        period.start if period else None,
        model.issued,
    )


def _assert_agrees(raw: dict[str, Any]) -> bool:
    fast = wellformed_observation(_projection(raw))
    if fast is None:
        return False
    assert fast == _slow(raw), raw
    return True


def _observations(bundles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for b in bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]


def test_generated_patients_observations_take_the_fast_path_with_r4b_values(
    demo_bundles: list[dict[str, Any]],
) -> None:
    """Every generated Observation is accepted by the fast path and parsed as R4B parses it."""
    found = _observations(demo_bundles)
    assert found
    assert all(_assert_agrees(o) for o in found)


@pytest.mark.corpus
def test_synthea_observations_agree_with_r4b() -> None:
    """On the shared Synthea corpus, whatever the fast path accepts R4B accepts alike."""
    paths = synthea_bundles()
    if not paths:
        pytest.skip("shared corpus absent")
    found = _observations([json.loads(p.read_text()) for p in paths[:5]])
    accepted = sum(_assert_agrees(o) for o in found)
    # The fast path is the common case, else it buys nothing.
    assert accepted > 0.9 * len(found)


_BAD: list[tuple[str, Any]] = [
    ("status", "done"),
    ("status", None),
    ("effectiveDateTime", "2024-01-01T09:00:00"),  # a time without a zone
    ("effectiveDateTime", "2024-02-30"),
    ("effectiveDateTime", "yesterday"),
    ("issued", "2024-01-01"),
    ("id", "a_b"),
    ("code", {"coding": [{"system": "http://loinc.org", "code": " 2093-3"}]}),
    ("code", {"text": ""}),
    ("code", None),
    ("valueQuantity", {"value": True}),
    ("valueQuantity", {"value": "7.2"}),
    ("valueQuantity", {"value": 1, "unit": ""}),
    ("valueQuantity", {"value": 1, "extension": []}),
    ("valueQuantity", None),
    ("component", []),
    ("component", [{"valueQuantity": {"value": 1}}]),
]


@pytest.mark.parametrize(("field", "value"), _BAD)
def test_anything_unusual_goes_to_the_full_check(field: str, value: Any) -> None:
    """An element outside the narrow grammar is left to fhir.resources, never accepted."""
    raw = obs("o", "2093-3", 200, "mg/dL")
    raw[field] = value
    assert wellformed_observation(_projection(raw)) is None


def test_refusals_keep_fhir_resources_reason() -> None:
    """An invalid time is still refused with the R4B model's path and message."""
    bad = obs("bad", "2093-3", 200, "mg/dL")
    bad["effectiveDateTime"] = "yesterday"
    clear_parse_memo()
    (issue,) = ingest(bundle(patient(), bad)).issues
    assert issue.reason.startswith("Observation/bad is not valid FHIR R4: effectiveDateTime: ")


def _valid_observations() -> list[dict[str, Any]]:
    bp = obs("bp", "85354-9", 0, None)
    del bp["valueQuantity"]
    bp["component"] = [
        {"code": obs("x", "8480-6", 0, None)["code"], "valueQuantity": q}
        for q in ({"value": 128, "unit": "mm[Hg]"}, {"value": 81.5, "code": "mm[Hg]"})
    ]
    smoking = obs("s", "72166-2", 0, None)
    del smoking["valueQuantity"]
    smoking["valueCodeableConcept"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "8517006", "display": "Ex-smoker"}]
    }
    period = obs("p", "2160-0", 1.1, "mg/dL")
    del period["effectiveDateTime"]
    period["effectivePeriod"] = {"start": "2024-03", "end": "2024-03-02"}
    issued = obs("i", "2085-9", 51, "mg/dL")
    del issued["effectiveDateTime"]
    issued["issued"] = "2024-03-02T08:00:00.25-05:00"
    return [obs("o", "2093-3", 200, "mg/dL"), bp, smoking, period, issued]


_PATHS: list[tuple[Any, ...]] = [
    ("id",),
    ("status",),
    ("code",),
    ("code", "coding"),
    ("code", "coding", 0, "code"),
    ("code", "coding", 0, "system"),
    ("code", "coding", 0, "display"),
    ("effectiveDateTime",),
    ("effectiveInstant",),
    ("effectivePeriod",),
    ("issued",),
    ("valueQuantity",),
    ("valueQuantity", "value"),
    ("valueQuantity", "unit"),
    ("valueQuantity", "comparator"),
    ("valueCodeableConcept",),
    ("dataAbsentReason",),
    ("component",),
    ("component", 0, "valueQuantity", "value"),
    ("component", 0, "code"),
]
_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            " x",
            "final",
            "2024",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00Z",
            "2024-02-30",
            "2024-05-01T10:00:00.1234567+02:00",
            [],
            {},
            {"start": "2024-05-01"},
            {"value": 1},
            {"text": "x"},
            {"coding": [{"code": "2093-3"}]},
            [{"code": {"text": "x"}}],
        ]
    ),
)


def _mutated(base: dict[str, Any], changes: list[tuple[tuple[Any, ...], Any]]) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    for path, value in changes:
        node: Any = raw
        for step in path[:-1]:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            if isinstance(node, dict) or (
                isinstance(node, list) and isinstance(last, int) and len(node) > last
            ):
                node[last] = copy.deepcopy(value)
    return raw


_observation = st.builds(
    _mutated,
    st.sampled_from(_valid_observations()),
    st.lists(st.tuples(st.sampled_from(_PATHS), _ODD), max_size=2),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_observation)
def test_whatever_the_fast_path_accepts_r4b_accepts_with_the_same_values(
    raw: dict[str, Any],
) -> None:
    """Property: accepted by the fast path implies valid R4B with identical fields."""
    event("fast path" if _assert_agrees(raw) else "full check")


def test_a_remembered_coding_verdict_never_stands_for_a_number_in_place_of_a_boolean() -> None:
    """userSelected 1 after userSelected true (equal as dict keys) still goes to the full check."""
    raw = obs("o1", "2093-3", 180.0, "mg/dL")
    selected = copy.deepcopy(raw)
    selected["code"]["coding"][0]["userSelected"] = True
    assert wellformed_observation(_projection(selected)) is not None
    numbered = copy.deepcopy(raw)
    numbered["code"]["coding"][0]["userSelected"] = 1
    assert wellformed_observation(_projection(numbered)) is None
