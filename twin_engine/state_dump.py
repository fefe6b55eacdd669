"""``Twin.to_state`` written out by hand: the dict pydantic's ``dump_python(mode="json")``
gives for the twin's dataclasses, built ~20% faster.

A hook call serialises the twin on every save (its content hash), also when nothing
changed; pydantic called the time serializer once per timestamp and cost more than the
hand-built dicts the release before the layout change used. Pydantic still reads a
state back (``Twin.from_state``) and stays the reference for what a state is:
tests/twin_engine/test_state_dump.py holds this to ``dump_python`` over generated twins,
the Synthea corpus and the previous release's stored states. A field added to a state
dataclass must be added here too (and to that test's strategies, when it has a default).

What pydantic does and this repeats: fields in declaration order, tuples as lists,
times and dates as ``isoformat()`` text (``StateTime``/``StateDate``), a ``float``
field's value as a float (an int 5 is written 5.0), ``verification_status`` only when
recorded and ``procedures`` only when there are some (their ``exclude_if``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, TypeVar

from twin_engine.fhir.entries import IngestIssue
from twin_engine.state_entries import (
    ConditionEntry,
    Demographics,
    MedicationEntry,
    ObservationPoint,
    ProcedureEntry,
    SmokingEntry,
)

_E = TypeVar("_E")


def by_key(
    entries: Mapping[str, tuple[_E, ...]], dump: Callable[[_E], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """A mapping of entry tuples (observations by quantity, ...) as JSON-ready data."""
    return {key: [dump(e) for e in group] for key, group in entries.items()}


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def demographics_state(d: Demographics) -> dict[str, Any]:
    return {
        "birth_date": _iso(d.birth_date),
        "gender": d.gender,
        "race_omb": list(d.race_omb),
        "race_recorded": d.race_recorded,
        "ethnicity_omb": list(d.ethnicity_omb),
        "deceased": d.deceased,
        "deceased_time": _iso(d.deceased_time),
    }


def point_state(p: ObservationPoint) -> dict[str, Any]:
    value = p.value
    return {
        "value": None if value is None else float(value),
        "unit": p.unit,
        "time": p.time.isoformat(),
        "source": p.source,
        "quality": p.quality,
        "loinc": p.loinc,
        "note": p.note,
    }


def condition_state(e: ConditionEntry) -> dict[str, Any]:
    out = {
        "system": e.system,
        "code": e.code,
        "display": e.display,
        "onset": _iso(e.onset),
        "abatement": _iso(e.abatement),
        "recorded": _iso(e.recorded),
        "source": e.source,
        "clinical_status": e.clinical_status,
        "active": e.active,
    }
    if e.verification_status is not None:
        out["verification_status"] = e.verification_status
    return out


def procedure_state(e: ProcedureEntry) -> dict[str, Any]:
    return {
        "system": e.system,
        "code": e.code,
        "display": e.display,
        "performed": _iso(e.performed),
        "status": e.status,
        "source": e.source,
    }


def medication_state(e: MedicationEntry) -> dict[str, Any]:
    return {
        "rxnorm": e.rxnorm,
        "display": e.display,
        "kind": e.kind,
        "status": e.status,
        "authored": _iso(e.authored),
        "effective_start": _iso(e.effective_start),
        "effective_end": _iso(e.effective_end),
        "source": e.source,
        "matched_by": e.matched_by,
        "note": e.note,
    }


def smoking_state(s: SmokingEntry) -> dict[str, Any]:
    return {
        "status": s.status,
        "system": s.system,
        "code": s.code,
        "display": s.display,
        "time": s.time.isoformat(),
        "source": s.source,
    }


def issue_state(i: IngestIssue) -> dict[str, Any]:
    return {"resource_type": i.resource_type, "resource_id": i.resource_id, "reason": i.reason}
