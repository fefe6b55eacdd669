"""``Twin.to_state`` (``twin_engine.state_dump``, built by hand) is pydantic's
``dump_python(mode="json")`` of the twin: over generated twins, the Synthea corpus and
the previous release's stored states."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import synthea_bundles
from twin_engine import Twin, build_twin_from_fhir
from twin_engine.fhir.entries import IngestIssue
from twin_engine.twin import (
    ConditionEntry,
    Demographics,
    MedicationEntry,
    ObservationPoint,
    ProcedureEntry,
    SmokingEntry,
    _state_adapter,
)

BUNDLES = synthea_bundles()
STATES = Path(__file__).parent / "states"


def _same(twin: Twin) -> None:
    """Same keys in the same order, same values of the same types (5.0 is not 5, NaN
    is NaN): compared as json.dumps text, which writes all of that."""
    reference = _state_adapter().dump_python(twin, mode="json")
    assert json.dumps(twin.to_state()) == json.dumps(reference)


_text = st.text(max_size=8)
_maybe_text = st.none() | _text
_zones = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
)
_time = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=_zones
)
_maybe_time = st.none() | _time
# A float field may hold an int (pydantic writes it as a float) or a non-finite value.
_value = st.none() | st.floats() | st.integers(min_value=-(10**6), max_value=10**6)
_texts = st.lists(_text, max_size=3).map(tuple)

_point = st.builds(
    ObservationPoint,
    value=_value,
    unit=_text,
    time=_time,
    source=_text,
    quality=st.sampled_from(["ok", "implausible", "unit_unknown"]),
    loinc=_text,
    note=_text,
)
_condition = st.builds(
    ConditionEntry,
    system=_text,
    code=_text,
    display=_maybe_text,
    onset=_maybe_time,
    abatement=_maybe_time,
    recorded=_maybe_time,
    source=_text,
    clinical_status=_maybe_text,
    active=st.booleans(),
    verification_status=_maybe_text,
)
_procedure = st.builds(
    ProcedureEntry,
    system=_text,
    code=_text,
    display=_maybe_text,
    performed=_maybe_time,
    status=_text,
    source=_text,
)
_medication = st.builds(
    MedicationEntry,
    rxnorm=_maybe_text,
    display=_maybe_text,
    kind=st.sampled_from(["MedicationRequest", "MedicationStatement"]),
    status=_text,
    authored=_maybe_time,
    effective_start=_maybe_time,
    effective_end=_maybe_time,
    source=_text,
    matched_by=st.sampled_from(["rxnorm", "text"]),
    note=_text,
)
_smoking = st.builds(
    SmokingEntry,
    status=st.none() | st.sampled_from(["current", "former", "never"]),
    system=_maybe_text,
    code=_text,
    display=_maybe_text,
    time=_time,
    source=_text,
)
_demographics = st.builds(
    Demographics,
    birth_date=st.none() | st.dates(min_value=date(1, 1, 1)),
    gender=_maybe_text,
    race_omb=_texts,
    race_recorded=st.booleans(),
    ethnicity_omb=_texts,
    deceased=st.booleans(),
    deceased_time=_maybe_time,
)


def _by_name(entries: Any) -> Any:
    return st.dictionaries(_text, st.lists(entries, max_size=3).map(tuple), max_size=3)


_twin = st.builds(
    Twin,
    patient_id=_text,
    demographics=_demographics,
    observations=_by_name(_point),
    conditions=_by_name(_condition),
    medications=_by_name(_medication),
    smoking=st.lists(_smoking, max_size=3).map(tuple),
    issues=st.lists(st.builds(IngestIssue, _text, _maybe_text, _text), max_size=3).map(tuple),
    procedures=_by_name(_procedure),
)


@settings(max_examples=400, deadline=None)
@given(_twin)
def test_any_twin_is_dumped_as_pydantic_dumps_it(twin: Twin) -> None:
    """Times in any zone, ints and non-finite floats, absent optional fields: same state."""
    _same(twin)


@pytest.mark.skipif(not BUNDLES, reason="shared Synthea corpus not present")
def test_every_corpus_twin_is_dumped_as_pydantic_dumps_it() -> None:
    """Each Synthea patient's twin: the same state as pydantic's."""
    for path in BUNDLES:
        _same(build_twin_from_fhir(json.loads(path.read_text())))


@pytest.mark.parametrize("name", ["synthea_cathryn_windler.json", "edge_cases.json"])
def test_a_previous_release_state_is_dumped_as_pydantic_dumps_it(name: str) -> None:
    """The states the release before the layout change stored: the same state."""
    _same(Twin.from_state(json.loads((STATES / name).read_text(encoding="utf-8"))))
