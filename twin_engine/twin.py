"""The twin's state and `build_twin`: mapping ingested records onto it.

The twin holds what the data says, in canonical units, with every value's source.  It
does not decide what is current: that is `derive.derive_features`, as of a date.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from operator import attrgetter
from typing import Annotated, Any

from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from twin_engine.canonical import state_text as canonical_state_text
from twin_engine.codes import (
    LOINC_QUANTITY,
    SMOKING_SNOMED,
    SNOMED_SYSTEM,
    QuantityName,
)
from twin_engine.concepts import Concept, concepts_for
from twin_engine.errors import TwinStateError
from twin_engine.fhir.entries import IngestIssue
from twin_engine.fhir.medications import MedicationRecord
from twin_engine.fhir.read import IngestResult, ingest
from twin_engine.fhir.records import (
    ConditionRecord,
    ObservationRecord,
    PatientRecord,
    ProcedureRecord,
    QuantityRecord,
)
from twin_engine.medications import MedicationClass, classify_medication
from twin_engine.procedures import ProcedureConcept, procedure_concepts_for
from twin_engine.ranges import PLAUSIBLE_RANGES
from twin_engine.state_entries import ConditionEntry as ConditionEntry
from twin_engine.state_entries import Demographics as Demographics
from twin_engine.state_entries import MedicationEntry as MedicationEntry
from twin_engine.state_entries import ObservationPoint as ObservationPoint
from twin_engine.state_entries import ProcedureEntry as ProcedureEntry
from twin_engine.state_entries import SmokingEntry as SmokingEntry
from twin_engine.units import normalise

# Condition clinical states that count as "has it now" (FHIR R4 condition-clinical);
# an absent status is taken as active, as US Core problem lists often omit it.
_ACTIVE_CLINICAL_STATUS = frozenset({"active", "recurrence", "relapse"})


def _is_empty(value: Mapping[str, object]) -> bool:
    return not value


@dataclass(frozen=True, slots=True)
class Twin:
    """One patient's twin state.  Mappings are keyed in a fixed (sorted) order.

    Its stored form (`to_state`/`from_state`) is these dataclasses as pydantic reads and
    writes them: strict JSON types, no unknown keys, every field without a default required.
    """

    __pydantic_config__ = ConfigDict(strict=True, extra="forbid")

    patient_id: str
    demographics: Demographics
    observations: Mapping[str, tuple[ObservationPoint, ...]]
    conditions: Mapping[str, tuple[ConditionEntry, ...]]
    medications: Mapping[str, tuple[MedicationEntry, ...]]
    smoking: tuple[SmokingEntry, ...]
    issues: tuple[IngestIssue, ...]
    #: Stored only when there are some, so a twin without any keeps the content hash it had
    #: before procedures were read.
    procedures: Annotated[Mapping[str, tuple[ProcedureEntry, ...]], Field(exclude_if=_is_empty)] = (
        field(default_factory=dict)
    )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary: per quantity the count and the latest point."""
        state = self.to_state()
        observations: dict[str, Any] = {}
        for name, points in self.observations.items():
            latest = points[-1]
            observations[name] = {
                "count": len(points),
                "latest": {
                    "value": latest.value,
                    "unit": latest.unit,
                    "time": latest.time.isoformat(),
                    "source": latest.source,
                    "quality": latest.quality,
                },
            }
        return {
            "patient_id": self.patient_id,
            "demographics": state["demographics"],
            "observations": observations,
            "conditions": {
                concept: {
                    "count": len(entries),
                    "active": any(e.active for e in entries),
                    "sources": sorted({e.source for e in entries}),
                }
                for concept, entries in self.conditions.items()
            },
            "medications": {
                cls: {
                    "count": len(entries),
                    "statuses": sorted({e.status for e in entries}),
                    "sources": sorted({e.source for e in entries}),
                }
                for cls, entries in self.medications.items()
            },
            "procedures": state.get("procedures", {}),
            "smoking": state["smoking"][-1] if self.smoking else None,
            "issues": state["issues"],
            "content_hash": self.content_hash(),
        }

    def to_state(self) -> dict[str, Any]:
        """The whole state as JSON-ready data, by pydantic (the same model that validates
        it on load); `Twin.from_state` inverts it."""
        state: dict[str, Any] = _state_adapter().dump_python(self, mode="json")
        return state

    def state_text(self) -> str:
        """The canonical JSON text of the state: what a stored version holds, and what
        the content hash is the hash of."""
        return canonical_state_text(self.to_state())

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the state: same data, same hash."""
        return state_hash(self.state_text())

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Twin:
        """Rebuild a twin from `to_state()` output (e.g. a stored version), validated.

        Raises TwinStateError naming each field that is missing, of the wrong type or
        unreadable, or not part of the state.
        """
        try:
            # JSON mode: its strict rules are the stored text's (arrays are tuples, times
            # are ISO text); Python mode would want tuples and datetime objects.
            return _state_adapter().validate_json(json.dumps(state))
        except TypeError as exc:  # not JSON data at all (e.g. a datetime object inside)
            raise TwinStateError(f"twin state is not JSON data: {exc}") from exc
        except ValidationError as exc:
            raise TwinStateError(_state_problem(state, exc)) from exc


def state_hash(text: str) -> str:
    """The content hash of a state's canonical text (``Twin.state_text``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: The order of a timeline (points, smoking records): by time, then source.
_by_time_and_source = attrgetter("time", "source")


def build_twin(result: IngestResult) -> Twin:
    """Map ingested records onto a twin: canonical units, concepts, classes."""
    points: defaultdict[str, list[ObservationPoint]] = defaultdict(list)
    conditions: defaultdict[str, list[ConditionEntry]] = defaultdict(list)
    medications: defaultdict[str, list[MedicationEntry]] = defaultdict(list)
    procedures: defaultdict[str, list[ProcedureEntry]] = defaultdict(list)
    smoking: list[SmokingEntry] = []
    for record in result.resources:
        if isinstance(record, ObservationRecord):
            for quantity in record.quantities:
                name = LOINC_QUANTITY[quantity.loinc]
                points[name].append(_point(name, record, quantity.loinc, quantity))
            if record.smoking_codings:
                smoking.append(_smoking(record))
        elif isinstance(record, ConditionRecord):
            for concept, entry in _conditions(record):
                conditions[concept].append(entry)
        elif isinstance(record, MedicationRecord):
            for med_class, med_entry in _medications(record):
                medications[med_class].append(med_entry)
        elif isinstance(record, ProcedureRecord):
            for proc_concept, proc_entry in _procedures(record):
                procedures[proc_concept].append(proc_entry)
    smoking.sort(key=_by_time_and_source)
    return Twin(
        patient_id=result.patient.id,
        demographics=_demographics(result.patient),
        observations={
            name: tuple(sorted(points[name], key=_by_time_and_source)) for name in sorted(points)
        },
        conditions={
            c: tuple(sorted(conditions[c], key=_condition_key)) for c in sorted(conditions)
        },
        medications={
            m: tuple(sorted(medications[m], key=_medication_key)) for m in sorted(medications)
        },
        smoking=tuple(smoking),
        issues=result.issues,
        procedures={
            p: tuple(sorted(procedures[p], key=_procedure_key)) for p in sorted(procedures)
        },
    )


def build_twin_from_fhir(payload: object, *, patient_id: str | None = None) -> Twin:
    """`ingest` then `build_twin`: a FHIR payload straight to a twin."""
    return build_twin(ingest(payload, patient_id=patient_id))


# -- mapping ---------------------------------------------------------------------------


def _demographics(patient: PatientRecord) -> Demographics:
    return Demographics(
        birth_date=patient.birth_date,
        gender=patient.gender,
        race_omb=patient.race_omb,
        race_recorded=patient.race_recorded,
        ethnicity_omb=patient.ethnicity_omb,
        deceased=patient.deceased,
        deceased_time=patient.deceased_time,
    )


def _point(
    name: QuantityName, record: ObservationRecord, loinc: str, quantity: QuantityRecord
) -> ObservationPoint:
    norm = normalise(name, quantity.value, quantity.ucum_code, quantity.unit)
    if not norm.known:
        raw_unit = quantity.ucum_code or quantity.unit or "no unit"
        return ObservationPoint(
            norm.value,
            norm.unit,
            record.time,
            record.source,
            "unit_unknown",
            loinc,
            f"{record.source} has unit {raw_unit!r}: {norm.reason}; not used",
        )
    if not PLAUSIBLE_RANGES[name].contains(norm.value):
        rng = PLAUSIBLE_RANGES[name]
        return ObservationPoint(
            norm.value,
            norm.unit,
            record.time,
            record.source,
            "implausible",
            loinc,
            f"{record.source} value {quantity.value:g} {quantity.ucum_code or quantity.unit} "
            f"is outside the plausible range {rng.low:g}-{rng.high:g} {norm.unit}",
        )
    return ObservationPoint(norm.value, norm.unit, record.time, record.source, "ok", loinc)


def _smoking(record: ObservationRecord) -> SmokingEntry:
    # Prefer a SNOMED coding we can classify; otherwise keep the first, unclassified.
    chosen = next(
        (
            c
            for c in record.smoking_codings
            if c.system in (SNOMED_SYSTEM, None) and c.code in SMOKING_SNOMED
        ),
        record.smoking_codings[0],
    )
    status = SMOKING_SNOMED.get(chosen.code) if chosen.system in (SNOMED_SYSTEM, None) else None
    return SmokingEntry(
        status, chosen.system, chosen.code, chosen.display, record.time, record.source
    )


def _conditions(record: ConditionRecord) -> list[tuple[Concept, ConditionEntry]]:
    active = record.clinical_status is None or record.clinical_status in _ACTIVE_CLINICAL_STATUS
    out: list[tuple[Concept, ConditionEntry]] = []
    seen: set[Concept] = set()
    for coding in record.codings:
        for concept in concepts_for(coding.system, coding.code):
            if concept in seen:
                continue  # one entry per concept even when several codings map to it
            seen.add(concept)
            out.append(
                (
                    concept,
                    ConditionEntry(
                        system=coding.system or "",
                        code=coding.code,
                        display=coding.display,
                        onset=record.onset,
                        abatement=record.abatement,
                        recorded=record.recorded,
                        source=record.source,
                        clinical_status=record.clinical_status,
                        active=active,
                        verification_status=record.verification_status,
                    ),
                )
            )
    return out


def _procedures(record: ProcedureRecord) -> list[tuple[ProcedureConcept, ProcedureEntry]]:
    out: list[tuple[ProcedureConcept, ProcedureEntry]] = []
    seen: set[ProcedureConcept] = set()
    for coding in record.codings:
        for concept in procedure_concepts_for(coding.system, coding.code):
            if concept in seen:
                continue
            seen.add(concept)
            entry = ProcedureEntry(
                system=coding.system or "",
                code=coding.code,
                display=coding.display,
                performed=record.performed,
                status=record.status,
                source=record.source,
            )
            out.append((concept, entry))
    return out


def _procedure_key(entry: ProcedureEntry) -> tuple[str, str]:
    return (_iso(entry.performed) or "", entry.source)


def _medications(record: MedicationRecord) -> list[tuple[MedicationClass, MedicationEntry]]:
    display = record.texts[0] if record.texts else None
    return [
        (
            match.medication_class,
            MedicationEntry(
                rxnorm=match.rxnorm,
                display=display,
                kind=record.kind,
                status=record.status,
                authored=record.authored,
                effective_start=record.effective_start,
                effective_end=record.effective_end,
                source=record.source,
                matched_by=match.matched_by,
                note=match.note,
            ),
        )
        for match in classify_medication(record.rxnorm_codes, record.texts)
    ]


def _condition_key(entry: ConditionEntry) -> tuple[str, str]:
    return (_iso(entry.onset) or "", entry.source)


def _medication_key(entry: MedicationEntry) -> tuple[str, str]:
    return (_iso(entry.authored or entry.effective_start) or "", entry.source)


# -- JSON state ------------------------------------------------------------------------


@cache
def _state_adapter() -> TypeAdapter[Twin]:
    # Built on first use: the schema walk costs milliseconds that importing need not pay.
    return TypeAdapter(Twin)


def _state_problem(state: Mapping[str, Any], exc: ValidationError) -> str:
    # A tampered row may hold any JSON, not an object.
    pid = state.get("patient_id") if isinstance(state, Mapping) else None
    who = f"Patient/{pid}" if isinstance(pid, str) else "a patient"
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'state'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
    return f"stored twin state of {who} is not valid: {problems}"


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
