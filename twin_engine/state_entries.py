"""The twin state's entries: one timeline point, condition, procedure, medication and
smoking record each, and the patient's demographics (`twin.Twin` holds them).

Their stored form is pydantic's: `Twin.to_state` dumps it and `Twin.from_state` validates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

from pydantic import Field, PlainSerializer, PlainValidator

from twin_engine.codes import SmokingStatus
from twin_engine.features import Quality
from twin_engine.fhir.medications import MedicationKind
from twin_engine.medications import MatchedBy


# ValueError, not TypeError, below: pydantic turns only ValueError into a validation error.
def _read_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"a time must be ISO 8601 text, not {type(value).__name__}")
    return datetime.fromisoformat(value)


def _read_date(value: object) -> date:
    if not isinstance(value, str):
        raise ValueError(f"a date must be ISO 8601 text, not {type(value).__name__}")
    return date.fromisoformat(value)


def _iso_text(value: date) -> str:
    return value.isoformat()


def _is_none(value: object) -> bool:
    return value is None


# Times and dates in the stored state are `isoformat()` text read back by `fromisoformat`,
# as the state has always been written: pydantic's own format says "Z" for UTC, which
# would change every stored twin's content hash.
StateTime = Annotated[datetime, PlainValidator(_read_time), PlainSerializer(_iso_text)]
StateDate = Annotated[date, PlainValidator(_read_date), PlainSerializer(_iso_text)]


@dataclass(frozen=True, slots=True)
class Demographics:
    birth_date: StateDate | None
    gender: str | None
    race_omb: tuple[str, ...]
    #: True when a US Core race extension is present, even with no OMB category.
    race_recorded: bool
    ethnicity_omb: tuple[str, ...]
    deceased: bool
    deceased_time: StateTime | None


@dataclass(frozen=True, slots=True)
class ObservationPoint:
    """One value on a quantity's timeline.

    `value` is in the quantity's canonical unit when `quality` is "ok" or
    "implausible"; with "unit_unknown" it is the raw value in the raw `unit`.
    """

    value: float | None
    unit: str
    time: StateTime
    source: str
    quality: Quality
    loinc: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class ConditionEntry:
    system: str
    code: str
    display: str | None
    onset: StateTime | None
    abatement: StateTime | None
    recorded: StateTime | None
    source: str
    clinical_status: str | None
    active: bool
    #: FHIR condition-ver-status; None when the record does not say (US Core allows it).
    #: Stored only when recorded, so that twins read before it was kept hash as they did.
    verification_status: Annotated[str | None, Field(exclude_if=_is_none)] = None


@dataclass(frozen=True, slots=True)
class ProcedureEntry:
    """A performed procedure of one concept (revascularisation, dialysis)."""

    system: str
    code: str
    display: str | None
    performed: StateTime | None
    status: str
    source: str


@dataclass(frozen=True, slots=True)
class MedicationEntry:
    rxnorm: str | None
    display: str | None
    kind: MedicationKind
    status: str
    authored: StateTime | None
    effective_start: StateTime | None
    effective_end: StateTime | None
    source: str
    matched_by: MatchedBy
    note: str


@dataclass(frozen=True, slots=True)
class SmokingEntry:
    status: SmokingStatus | None
    system: str | None
    code: str
    display: str | None
    time: StateTime
    source: str
