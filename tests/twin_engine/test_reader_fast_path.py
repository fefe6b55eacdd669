"""The premises of the Observation reader's cold path (``records.read_observation``): it
skips ``checked_fields`` for an Observation whose status is in its value set and whose
elements are all R4, and gives ``observation_parts`` the resource itself, not a copy of
its projection. Each premise is a test here; if one stopped holding, a refusal, a reason
or a value could change, and these fail."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.twin_engine.test_elements import _observation, _valid_observations
from twin_engine import medications
from twin_engine.codes import LOINC_SYSTEM
from twin_engine.fhir import records
from twin_engine.fhir.elements import (
    OBSERVATION_READS,
    ObservationFields,
    observation_parts,
    wellformed_observation,
)
from twin_engine.fhir.entries import (
    _PATIENT_URL,
    Entry,
    IngestIssue,
    PatientRef,
    codings,
    loinc_codes,
)
from twin_engine.fhir.records import OBSERVATION_FIELDS, observation_codes, read_observation
from twin_engine.fhir.valuesets import OBSERVATION_STATUS, REQUIRED_CODES


def _projection(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k in OBSERVATION_FIELDS}


class _Recording(dict[str, Any]):
    """A dict that notes every key looked up or tested (``keys()`` views are intersected
    with a constant set in ``observation_parts``: noted as those keys)."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def test_the_fast_check_reads_only_the_observation_projection() -> None:
    """What ``observation_parts`` reads is kept by the projection, so the resource itself
    and its projection get the same answer."""
    assert OBSERVATION_READS <= OBSERVATION_FIELDS
    for raw in _valid_observations():
        recording = _Recording({**raw, "subject": {"reference": "Patient/p"}, "note": []})
        observation_parts(recording)
        assert recording.read <= OBSERVATION_READS, recording.read - OBSERVATION_READS


def test_an_observation_has_one_required_binding_the_fast_path_checks() -> None:
    """``read_observation`` stands in for ``code_problem`` by a status check alone."""
    assert REQUIRED_CODES["Observation"] == {"status": OBSERVATION_STATUS}


_EXTRA = st.dictionaries(
    st.sampled_from(["subject", "note", "meta", "text", "category", "bogus", "_status", "focus"]),
    st.one_of(st.none(), st.text(max_size=4), st.lists(st.integers(), max_size=2)),
    max_size=3,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_observation, _EXTRA)
def test_the_fast_check_answers_on_the_resource_as_on_its_projection(
    raw: dict[str, Any], extra: dict[str, Any]
) -> None:
    whole = {**raw, **extra}
    parts = observation_parts(whole)
    assert parts == observation_parts(_projection(whole))
    fields = wellformed_observation(_projection(whole))
    assert (ObservationFields(*parts) if parts is not None else None) == fields


def _read(raw: dict[str, Any]) -> tuple[records.ObservationRecord | None, list[IngestIssue]]:
    issues: list[IngestIssue] = []
    entry = Entry(copy.deepcopy(raw), "Observation", raw.get("id") or "x", None)
    codes = observation_codes(entry.resource)
    return (read_observation(entry, issues, codes) if codes is not None else None), issues


def test_a_plain_observation_skips_checked_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cold path's saving: a well-formed Observation is read without ``checked_fields``
    (and without the projection it copies)."""

    def refuse(*args: object) -> None:
        raise AssertionError("checked_fields called")

    monkeypatch.setattr(records, "checked_fields", refuse)
    for raw in _valid_observations():
        record, issues = _read({**raw, "subject": {"reference": "Patient/p"}})
        assert record is not None and not issues


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _observation,
    _EXTRA,
    st.sampled_from([None, "done", "final", "cancelled", "registered", 3]),
)
def test_the_inlined_check_reads_as_checked_fields_does(
    raw: dict[str, Any], extra: dict[str, Any], status: object
) -> None:
    """The same record and the same issues (reasons included) with the inlined check as
    with ``checked_fields`` alone, for valid, invalid and unknown elements alike."""
    whole = {**raw, **extra}
    if status is not None:
        whole["status"] = status
    fast = _read(whole)
    saved = observation_parts
    setattr(records, "observation_parts", lambda _raw: None)  # noqa: B010  # never vouches
    try:
        slow = _read(whole)
    finally:
        setattr(records, "observation_parts", saved)  # noqa: B010
    assert fast == slow


_CODING = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "system": st.sampled_from([LOINC_SYSTEM, "http://snomed.info/sct", None, 3]),
            "code": st.one_of(st.sampled_from(["2093-3", "8480-6", ""]), st.none(), st.integers()),
        },
    ),
    st.sampled_from(["junk", None, 1]),
)


@given(st.one_of(st.none(), st.lists(_CODING, max_size=3), st.sampled_from(["x", {}])))
def test_loinc_codes_of_one_coding_as_of_several(coding: Any) -> None:
    """The one-coding shortcut of ``loinc_codes`` gives what the general rule gives."""
    concept = {"coding": coding}
    expected = [c["code"] for c in codings(concept) if c.get("system") in (LOINC_SYSTEM, None)]
    assert loinc_codes(concept) == expected


def _named_by_before(patient: PatientRef, ref: str) -> bool | None:
    """``PatientRef.named_by`` as it was written before the urn test lost its f-string."""
    if ref in (patient.full_url, f"urn:uuid:{patient.id}"):
        return True
    found = _PATIENT_URL.search(ref)
    if found:
        return found.group(1) == patient.id
    if ref.startswith("urn:uuid:") and not patient.entries_known:
        return None
    return False


@given(
    st.sampled_from(["p1", "p-2", "urn:uuid:p1", ""]),
    st.one_of(st.none(), st.sampled_from(["urn:uuid:p1", "http://x/Patient/p1", ""])),
    st.booleans(),
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            ["urn:uuid:p1", "urn:uuid:p1x", "urn:uuid:", "p1", "Patient/p1", "urn:uuid:urn:uuid:p1"]
        ),
    ),
)
def test_a_patient_is_named_as_before(
    pid: str, full_url: str | None, known: bool, ref: str
) -> None:
    patient = PatientRef(pid, full_url, known)
    assert patient.named_by(ref) == _named_by_before(patient, ref)


_PRODUCTS = st.tuples(
    st.lists(st.sampled_from(["979492", "83367", "11124", "1719286", "x"]), max_size=2).map(tuple),
    st.lists(
        st.one_of(
            st.sampled_from(
                ["losartan potassium 50 MG Oral Tablet", "Simvistatin 10 MG", "Vancomycin 1 G"]
            ),
            st.text(max_size=20),
        ),
        max_size=2,
    ).map(tuple),
)


@given(st.lists(_PRODUCTS, min_size=1, max_size=4))
def test_a_remembered_medication_class_is_the_classing_of_its_product(
    products: list[tuple[tuple[str, ...], tuple[str, ...]]],
) -> None:
    for codes, texts in products + products:  # the second time from the memory
        assert medications.classify_medication(codes, texts) == medications._classify(codes, texts)
    assert medications.classify_medication(("x",), ("y" * 600,)) == ()
    assert (("x",), ("y" * 600,)) not in medications._CLASSES
