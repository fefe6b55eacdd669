"""The stored twin state: states written by earlier releases load and re-serialise unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from twin_engine import Twin
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
