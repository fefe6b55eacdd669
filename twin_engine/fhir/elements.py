"""The reader's own check of the elements the twin reads, one function per resource type.

Validating a resource with fhir.resources (pydantic) costs ~0.1 ms of Python per resource;
on a new patient it was about half of the hook call's server time (bench/profile_cold.py).
Most resources an EHR sends are plainly well formed. Each ``wellformed_*`` function here
accepts a resource's projection (the elements the twin reads, ``twin_engine.fhir.records``)
only when every one of them has the shape FHIR R4 gives it, checked by hand against a
*narrower* grammar than the R4B models accept, and returns the parsed values; anything
else — an unexpected key inside a Coding, a null, a partial time, an extension on a
primitive, a code outside its required value set — returns None, and the reader then
asks fhir.resources about that one resource, so every refusal keeps its reason
(``twin_engine.fhir.validate``). tests/twin_engine/test_elements.py holds the property
that makes this safe: whatever this module accepts, the R4B model accepts too, and yields
the same values.

Required value sets are the reader's own check too, made *before* either path
(``twin_engine.fhir.valuesets``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from twin_engine.fhir.shape import FhirTime
from twin_engine.fhir.shape import date_time as _date_time
from twin_engine.fhir.shape import instant as _instant
from twin_engine.fhir.valuesets import (
    EVENT_STATUS,
    GENDER,
    OBSERVATION_STATUS,
    REQUEST_INTENT,
    STATUS_VALUE_SETS,
)

# R4 datatypes (https://hl7.org/fhir/R4/datatypes.html): id, code, uri (non-empty, no
# whitespace here: narrower than R4's \S* so an empty uri goes to the full check).
_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CODE: Final = re.compile(r"[^\s]+( [^\s]+)*")
_URI: Final = re.compile(r"\S+")
_EFFECTIVE: Final = frozenset({"effectiveDateTime", "effectiveInstant", "effectivePeriod"})
_COMPARATORS: Final = frozenset({"<", "<=", ">=", ">"})
_INFINITIES: Final = (float("inf"), float("-inf"))
_NUMBER: Final = (int, float)  # a JSON number (bool aside); a tuple, not built per call
_CODING_KEYS: Final = frozenset({"system", "version", "code", "display", "userSelected"})
_CONCEPT_KEYS: Final = frozenset({"coding", "text"})
_QUANTITY_KEYS: Final = frozenset({"value", "comparator", "unit", "system", "code"})
_COMPONENT_KEYS: Final = frozenset(
    {"code", "valueQuantity", "valueCodeableConcept", "dataAbsentReason"}
)


@dataclass(frozen=True, slots=True)
class ObservationFields:
    """What ``ingest`` reads from a validated Observation model, without the model."""

    status: str
    effective_date_time: FhirTime | None
    effective_instant: datetime | None
    effective_period_start: FhirTime | None
    issued: datetime | None


def _text(value: object) -> bool:
    # R4 string: non-empty; leading/trailing whitespace goes to the full check.
    return isinstance(value, str) and value != "" and value == value.strip()


#: Verdicts of ``_coding`` by the Coding's items, and of ``_quantity`` by its items but the
#: number, for text items only (a patient's Observations repeat a few Codings and units;
#: the checks' regular expressions were a fifth of a new patient's reading time). Text
#: only: ``True == 1`` as a key, but ``userSelected`` must be a JSON boolean; any other
#: non-text item fails either check whatever its value. Cleared when full, so memory
#: stays flat.
_CODING_VERDICTS: dict[tuple[tuple[str, object], ...], bool] = {}
_UNIT_VERDICTS: dict[tuple[tuple[str, object], ...], bool] = {}
_VERDICTS_MAX: Final = 4096


def _remembered(
    verdicts: dict[tuple[tuple[str, object], ...], bool],
    items: dict[str, Any],
    check: Callable[[dict[str, Any]], bool],
) -> bool:
    """``check(items)``, remembered in ``verdicts`` by the items."""
    try:
        key = tuple(items.items())
        verdict = verdicts.get(key)
    except TypeError:  # a list or an object inside: neither a Coding's nor a unit's shape
        return False
    if verdict is None:
        verdict = check(items)
        if len(verdicts) >= _VERDICTS_MAX:
            verdicts.clear()
        verdicts[key] = verdict
    return verdict


def _coding(value: object) -> bool:
    if not isinstance(value, dict) or "userSelected" in value:
        return _coding_check(value)
    return _remembered(_CODING_VERDICTS, value, _coding_check)


def _coding_check(value: object) -> bool:
    if not isinstance(value, dict) or not value or not value.keys() <= _CODING_KEYS:
        return False
    system, code = value.get("system"), value.get("code")
    return (
        (system is None or (isinstance(system, str) and _URI.fullmatch(system) is not None))
        and (code is None or (isinstance(code, str) and _CODE.fullmatch(code) is not None))
        and all(value.get(k) is None or _text(value[k]) for k in ("display", "version"))
        and ("userSelected" not in value or isinstance(value["userSelected"], bool))
        and all(v is not None for v in value.values())
    )


def _concept(value: object) -> bool:
    if not isinstance(value, dict) or not value or not value.keys() <= _CONCEPT_KEYS:
        return False
    if "text" in value and not _text(value["text"]):
        return False
    if "coding" in value:
        codings = value["coding"]
        if not isinstance(codings, list) or not codings:
            return False
        for coding in codings:  # a loop: cheaper than all(map(...)) for the one or two
            if not _coding(coding):
                return False
    return True


def _quantity(value: object) -> bool:
    if not isinstance(value, dict) or not value:
        return False
    units = value.copy()
    number = units.pop("value", None)
    if "value" in value and (
        isinstance(number, bool)
        or not isinstance(number, _NUMBER)
        or number != number  # NaN
        or number in _INFINITIES
    ):
        return False
    return _remembered(_UNIT_VERDICTS, units, _units_check)


def _units_check(units: dict[str, Any]) -> bool:
    """A Quantity's elements but its value: comparator, unit, system, code."""
    if not units.keys() <= _QUANTITY_KEYS:
        return False
    comparator = units.get("comparator")
    if "comparator" in units and not (isinstance(comparator, str) and comparator in _COMPARATORS):
        return False
    system, code = units.get("system"), units.get("code")
    return (
        ("unit" not in units or _text(units["unit"]))
        and ("system" not in units or (isinstance(system, str) and bool(_URI.fullmatch(system))))
        and ("code" not in units or (isinstance(code, str) and bool(_CODE.fullmatch(code))))
    )


def _component(value: object) -> bool:
    if not isinstance(value, dict) or not value.keys() <= _COMPONENT_KEYS:
        return False
    if "valueQuantity" in value and "valueCodeableConcept" in value:
        return False
    return (
        _concept(value.get("code"))
        and ("valueQuantity" not in value or _quantity(value["valueQuantity"]))
        and ("valueCodeableConcept" not in value or _concept(value["valueCodeableConcept"]))
        and ("dataAbsentReason" not in value or _concept(value["dataAbsentReason"]))
    )


#: What ``observation_parts`` gives: an ``ObservationFields``' values, as a plain tuple.
ObservationParts = tuple[str, FhirTime | None, datetime | None, FhirTime | None, datetime | None]


def wellformed_observation(projection: dict[str, Any]) -> ObservationFields | None:
    """The fields of an Observation projection that is plainly valid R4, or None
    (then the caller validates it with fhir.resources and reports its reason)."""
    parts = observation_parts(projection)
    return ObservationFields(*parts) if parts is not None else None


def observation_parts(projection: dict[str, Any]) -> ObservationParts | None:
    """``wellformed_observation``'s fields as a tuple, without the record (the reader's
    cold path builds one per Observation).

    It reads only elements of ``records.OBSERVATION_FIELDS`` (``OBSERVATION_READS``), so
    its answer on a whole resource is its answer on that projection: the reader passes
    the resource itself and skips copying the projection
    (tests/twin_engine/test_elements.py holds the property)."""
    if projection.get("resourceType") != "Observation":
        return None
    rid = projection.get("id")
    if rid is not None and not (isinstance(rid, str) and _ID.fullmatch(rid)):
        return None
    status = projection.get("status")
    if not isinstance(status, str) or status not in OBSERVATION_STATUS:
        return None
    if not _concept(projection.get("code")):
        return None
    has_when = "effectiveDateTime" in projection
    has_instant = "effectiveInstant" in projection
    has_period = "effectivePeriod" in projection  # effective[x]: at most one of _EFFECTIVE
    if has_when + has_instant + has_period > 1 or (
        "valueQuantity" in projection and "valueCodeableConcept" in projection
    ):
        return None
    when: FhirTime | None = None
    instant: datetime | None = None
    period_start: FhirTime | None = None
    if has_when:
        when = _date_time(projection["effectiveDateTime"])
        if when is None:
            return None
    if has_instant:
        instant = _instant(projection["effectiveInstant"])
        if instant is None:
            return None
    if has_period:
        period = projection["effectivePeriod"]
        if not isinstance(period, dict) or not period or not period.keys() <= {"start", "end"}:
            return None
        parsed = {k: _date_time(v) for k, v in period.items()}
        if any(v is None for v in parsed.values()):
            return None
        period_start = parsed.get("start")
    issued: datetime | None = None
    if "issued" in projection:
        issued = _instant(projection["issued"])
        if issued is None:
            return None
    if "valueQuantity" in projection and not _quantity(projection["valueQuantity"]):
        return None
    if "valueCodeableConcept" in projection and not _concept(projection["valueCodeableConcept"]):
        return None
    if "dataAbsentReason" in projection and not _concept(projection["dataAbsentReason"]):
        return None
    if "component" in projection:
        components = projection["component"]
        if not isinstance(components, list) or not components:
            return None
        for component in components:
            if not _component(component):
                return None
    return (str(status), when, instant, period_start, issued)


#: The elements ``observation_parts`` reads (all of them in ``records.OBSERVATION_FIELDS``).
OBSERVATION_READS: Final = frozenset(
    {
        "resourceType",
        "id",
        "status",
        "code",
        *_EFFECTIVE,
        "issued",
        "valueQuantity",
        "valueCodeableConcept",
        "dataAbsentReason",
        "component",
    }
)


# -- the other resource types the twin reads ---------------------------------------------

_REFERENCE_KEYS: Final = frozenset({"reference", "display", "type"})


@dataclass(frozen=True, slots=True)
class PatientFields:
    gender: str | None
    birth_date: date | str | None
    deceased_boolean: bool | None
    deceased_date_time: FhirTime | None


@dataclass(frozen=True, slots=True)
class ConditionFields:
    onset: FhirTime | None  # onsetDateTime, else onsetPeriod.start
    abatement: FhirTime | None  # abatementDateTime, else abatementPeriod.end
    recorded: FhirTime | None


@dataclass(frozen=True, slots=True)
class ProcedureFields:
    status: str
    performed: FhirTime | None  # performedDateTime, else performedPeriod.start


@dataclass(frozen=True, slots=True)
class MedicationUseFields:
    status: str
    authored: FhirTime | None  # authoredOn (request) or dateAsserted (statement)
    effective_date_time: FhirTime | None
    effective_start: FhirTime | None
    effective_end: FhirTime | None


class _Refused(Exception):
    """An element outside the narrow grammar: the caller asks fhir.resources."""


def _optional_time(projection: dict[str, Any], key: str) -> FhirTime | None:
    if key not in projection:
        return None
    found = _date_time(projection[key])
    if found is None:
        raise _Refused
    return found


def _period(projection: dict[str, Any], key: str) -> tuple[FhirTime | None, FhirTime | None]:
    if key not in projection:
        return None, None
    period = projection[key]
    if not isinstance(period, dict) or not period or not period.keys() <= {"start", "end"}:
        raise _Refused
    parsed = {k: _date_time(v) for k, v in period.items()}
    if any(v is None for v in parsed.values()):
        raise _Refused
    return parsed.get("start"), parsed.get("end")


def _reference(value: object) -> bool:
    if not isinstance(value, dict) or not value or not value.keys() <= _REFERENCE_KEYS:
        return False
    return all(_text(value[k]) for k in value) and (
        "type" not in value or _URI.fullmatch(value["type"]) is not None
    )


def _one_of(projection: dict[str, Any], *keys: str) -> None:
    if sum(k in projection for k in keys) > 1:
        raise _Refused


def _head(projection: dict[str, Any], resource_type: str, *, subject: bool) -> None:
    """resourceType, id, and (where R4 requires it) a plain subject reference."""
    if projection.get("resourceType") != resource_type:
        raise _Refused
    rid = projection.get("id")
    if rid is not None and not (isinstance(rid, str) and _ID.fullmatch(rid)):
        raise _Refused
    if subject and not _reference(projection.get("subject")):
        raise _Refused
    for key in ("code", "clinicalStatus", "verificationStatus", "medicationCodeableConcept"):
        if key in projection and not _concept(projection[key]):
            raise _Refused


def wellformed_patient(projection: dict[str, Any]) -> PatientFields | None:
    """A Patient projection's fields when plainly valid R4, else None."""
    try:
        _head(projection, "Patient", subject=False)
        _one_of(projection, "deceasedBoolean", "deceasedDateTime")
        gender = projection.get("gender")
        if "gender" in projection and not (isinstance(gender, str) and gender in GENDER):
            return None
        birth: date | str | None = None
        if "birthDate" in projection:
            parsed = _date_time(projection["birthDate"])
            if parsed is None or isinstance(parsed, datetime):
                return None  # a birthDate is a date, never a time
            birth = parsed
        deceased = projection.get("deceasedBoolean")
        if "deceasedBoolean" in projection and not isinstance(deceased, bool):
            return None
        return PatientFields(
            gender, birth, deceased, _optional_time(projection, "deceasedDateTime")
        )
    except _Refused:
        return None


def wellformed_condition(projection: dict[str, Any]) -> ConditionFields | None:
    """A Condition projection's fields when plainly valid R4, else None."""
    try:
        _head(projection, "Condition", subject=True)
        _one_of(projection, "onsetDateTime", "onsetPeriod")
        _one_of(projection, "abatementDateTime", "abatementPeriod")
        onset = _optional_time(projection, "onsetDateTime")
        onset_start, _ = _period(projection, "onsetPeriod")
        abatement = _optional_time(projection, "abatementDateTime")
        _, abatement_end = _period(projection, "abatementPeriod")
        return ConditionFields(
            onset or onset_start,
            abatement or abatement_end,
            _optional_time(projection, "recordedDate"),
        )
    except _Refused:
        return None


def wellformed_procedure(projection: dict[str, Any]) -> ProcedureFields | None:
    """A Procedure projection's fields when plainly valid R4, else None."""
    try:
        _head(projection, "Procedure", subject=True)
        status = projection.get("status")
        if not isinstance(status, str) or status not in EVENT_STATUS:
            return None
        _one_of(projection, "performedDateTime", "performedPeriod")
        start, _ = _period(projection, "performedPeriod")
        return ProcedureFields(status, _optional_time(projection, "performedDateTime") or start)
    except _Refused:
        return None


_USE_COMMON: Final = frozenset(
    {
        "resourceType",
        "id",
        "status",
        "subject",
        "medicationCodeableConcept",
        "medicationReference",
        "contained",
    }
)
_USE_OWN: Final = {
    "MedicationRequest": frozenset({"intent", "authoredOn"}),
    "MedicationStatement": frozenset({"effectiveDateTime", "effectivePeriod", "dateAsserted"}),
    "MedicationAdministration": frozenset({"effectiveDateTime", "effectivePeriod"}),
}


#: The elements of each medication resource type's projection (a union made once).
_USE_ALLOWED: Final = {kind: _USE_COMMON | own for kind, own in _USE_OWN.items()}


def wellformed_medication_use(projection: dict[str, Any]) -> MedicationUseFields | None:
    """A MedicationRequest/Statement/Administration projection's fields when plainly valid
    R4 (no contained resources: those go to the full check), else None."""
    kind = projection.get("resourceType")
    allowed = STATUS_VALUE_SETS.get(kind) if isinstance(kind, str) else None
    if allowed is None or kind == "Observation" or kind == "Procedure" or "contained" in projection:
        return None
    if not projection.keys() <= _USE_ALLOWED[str(kind)]:
        return None  # an element of another medication resource type
    try:
        _head(projection, str(kind), subject=True)
        status = projection.get("status")
        if not isinstance(status, str) or status not in allowed:
            return None
        if ("medicationCodeableConcept" in projection) == ("medicationReference" in projection):
            return None
        if "medicationReference" in projection and not _reference(
            projection["medicationReference"]
        ):
            return None
        if kind == "MedicationRequest":
            intent = projection.get("intent")
            if not (isinstance(intent, str) and intent in REQUEST_INTENT):
                return None
            return MedicationUseFields(
                status, _optional_time(projection, "authoredOn"), None, None, None
            )
        _one_of(projection, "effectiveDateTime", "effectivePeriod")
        if kind == "MedicationAdministration" and not (
            "effectiveDateTime" in projection or "effectivePeriod" in projection
        ):
            return None  # effective[x] is required (1..1) on an administration
        start, end = _period(projection, "effectivePeriod")
        asserted = (
            _optional_time(projection, "dateAsserted") if kind == "MedicationStatement" else None
        )
        return MedicationUseFields(
            status, asserted, _optional_time(projection, "effectiveDateTime"), start, end
        )
    except _Refused:
        return None


def wellformed_medication(projection: dict[str, Any]) -> bool:
    """Whether a bundled Medication's projection (id, code) is plainly valid R4."""
    try:
        _head(projection, "Medication", subject=False)
    except _Refused:
        return False
    return True
