"""The state's canonical text (``twin_engine.canonical``) is byte for byte what earlier
releases wrote with ``json.dumps``: over generated JSON data, over every twin of the
shared Synthea corpus, and in the cases orjson would write otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import synthea_bundles
from twin_engine import build_twin_from_fhir
from twin_engine.canonical import _orjson_writes_it_alike, state_text

BUNDLES = synthea_bundles()


def _old_text(state: Any) -> str:
    """What the releases before wrote (and hashed)."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=1500, deadline=None)
@given(_JSON)
def test_the_canonical_text_of_any_json_data_is_json_dumps_text(state: Any) -> None:
    """Floats of every magnitude, NaN, big integers, any text and key: the same bytes."""
    assert state_text(state) == _old_text(state)


@pytest.mark.skipif(not BUNDLES, reason="shared Synthea corpus not present")
def test_every_corpus_twin_takes_the_fast_path_and_gets_the_old_bytes() -> None:
    """Each Synthea patient's state is written by orjson, as json.dumps wrote it."""
    for path in BUNDLES:
        state = build_twin_from_fhir(json.loads(path.read_text())).to_state()
        assert _orjson_writes_it_alike(state), path.name
        assert state_text(state) == _old_text(state), path.name


@pytest.mark.parametrize(
    "value", [1e-05, -1.5e-07, 5e-324, float("nan"), float("inf"), 2**64, (1, 2)]
)
def test_values_orjson_writes_otherwise_are_written_as_before(value: Any) -> None:
    """A tiny float, NaN, infinity, a big integer, a tuple: json.dumps's bytes."""
    state = {"observations": {"x": [{"value": value, "unit": "mg/dL"}]}}
    assert state_text(state) == _old_text(state)
