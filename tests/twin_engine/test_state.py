"""The stored twin state: states written by earlier releases load and re-serialise unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from twin_engine import SqliteTwinStore, Twin, TwinStateError
from twin_engine.store import state_json

STATES = Path(__file__).parent / "states"

# Written by the release before the state was described by pydantic models (commit 4897d52):
# `state_json(twin)` of a Synthea corpus patient, and of a hand-made bundle with what the
# corpus lacks (a skipped entry, a dialysis procedure, a condition without verification
# status, implausible and unknown-unit values, an unclassified smoking code, a medication
# matched by its text). Their content hashes are the ones stored in audit records.
OLD_STATES = {
    "synthea_cathryn_windler.json": (
        "5d00d209920c862781ed00b53283b24e9a7636a19bd4a231f9c2219ceedae023"
    ),
    "edge_cases.json": "5b968c4e083d7974bab5119a6d79aa97190b0fc47094d44bce87faac62d85237",
}


@pytest.mark.parametrize(("name", "content_hash"), sorted(OLD_STATES.items()))
def test_a_state_written_by_the_previous_release_reloads_byte_identical(
    name: str, content_hash: str
) -> None:
    """Loading an old stored state and saving it again gives the same bytes and hash."""
    text = (STATES / name).read_text(encoding="utf-8")
    twin = Twin.from_state(json.loads(text))
    assert state_json(twin) == text
    assert twin.content_hash() == content_hash
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == content_hash


def _old_state() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((STATES / "edge_cases.json").read_text("utf-8")))


def _drop_onset(state: dict[str, Any]) -> None:
    del state["conditions"]["ckd"][0]["onset"]


def _value_as_text(state: dict[str, Any]) -> None:
    state["observations"]["total_cholesterol"][0]["value"] = "210"


def _bad_time(state: dict[str, Any]) -> None:
    state["smoking"][1]["time"] = "2024-13-01T00:00:00+00:00"


def _time_as_number(state: dict[str, Any]) -> None:
    state["demographics"]["deceased_time"] = 1700000000


def _flag_as_text(state: dict[str, Any]) -> None:
    state["demographics"]["deceased"] = "false"


def _unknown_quality(state: dict[str, Any]) -> None:
    state["observations"]["total_cholesterol"][0]["quality"] = "good"


def _unknown_key(state: dict[str, Any]) -> None:
    state["medications"]["antihypertensive"][0]["dose"] = "160 mg"


def _no_patient(state: dict[str, Any]) -> None:
    del state["patient_id"]


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_drop_onset, "conditions.ckd.0.onset: Field required"),
        (_value_as_text, "observations.total_cholesterol.0.value: Input should be a valid number"),
        (
            _bad_time,
            "smoking.1.time: Value error, month must be in 1..12",
        ),
        (
            _time_as_number,
            "demographics.deceased_time: Value error, a time must be ISO 8601 text, not int",
        ),
        (_flag_as_text, "demographics.deceased: Input should be a valid boolean"),
        (
            _unknown_quality,
            "observations.total_cholesterol.0.quality: Input should be 'ok', 'missing', "
            "'stale', 'implausible' or 'unit_unknown'",
        ),
        (_unknown_key, "medications.antihypertensive.0.dose: Unexpected keyword argument"),
    ],
)
def test_a_malformed_state_is_refused_naming_the_field(
    tamper: Callable[[dict[str, Any]], None], problem: str
) -> None:
    """A tampered stored state raises TwinStateError naming the patient and the field."""
    state = _old_state()
    tamper(state)
    with pytest.raises(TwinStateError) as caught:
        Twin.from_state(state)
    assert str(caught.value) == f"stored twin state of Patient/p1 is not valid: {problem}"


def test_a_state_without_patient_says_so() -> None:
    """Without its patient id the message still says which field is missing."""
    state = _old_state()
    _no_patient(state)
    with pytest.raises(TwinStateError) as caught:
        Twin.from_state(state)
    assert str(caught.value) == (
        "stored twin state of a patient is not valid: patient_id: Field required"
    )


def test_a_tampered_row_in_the_store_is_refused_on_load(tmp_path: Path) -> None:
    """The store hands back the row; turning it into a twin refuses the tampered state."""
    path = tmp_path / "twins.db"
    store = SqliteTwinStore(path)
    try:
        store.save(Twin.from_state(_old_state()))
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "UPDATE twin_versions SET twin_json = "
                'replace(twin_json, \'"race_recorded":true\', \'"race_recorded":"yes"\')'
            )
        with pytest.raises(TwinStateError, match=r"demographics\.race_recorded"):
            store.load("p1").twin()
    finally:
        store.close()


def test_a_state_that_is_not_an_object_or_not_json_is_refused() -> None:
    """A stored row holding a JSON array, or Python objects, is a TwinStateError too."""
    with pytest.raises(TwinStateError) as caught:
        Twin.from_state([])  # type: ignore[arg-type]
    assert str(caught.value) == (
        "stored twin state of a patient is not valid: state: Input should be an object"
    )
    state = _old_state()
    state["smoking"][0]["time"] = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(TwinStateError, match=r"^twin state is not JSON data: "):
        Twin.from_state(state)
