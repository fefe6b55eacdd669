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
from typing import Any

from twin_engine.codes import (
    LOINC_QUANTITY,
    SMOKING_SNOMED,
    SNOMED_SYSTEM,
    QuantityName,
    SmokingStatus,
)
from twin_engine.concepts import Concept, concepts_for
from twin_engine.features import Quality
from twin_engine.ingest import (
    ConditionRecord,
    IngestIssue,
    IngestResult,
    MedicationKind,
    MedicationRecord,
    ObservationRecord,
    PatientRecord,
    ProcedureRecord,
    QuantityRecord,
    ingest,
)
from twin_engine.medications import MatchedBy, MedicationClass, classify_medication
from twin_engine.procedures import ProcedureConcept, procedure_concepts_for
from twin_engine.ranges import PLAUSIBLE_RANGES
from twin_engine.units import normalise

# Condition clinical states that count as "has it now" (FHIR R4 condition-clinical);
# an absent status is taken as active, as US Core problem lists often omit it.
_ACTIVE_CLINICAL_STATUS = frozenset({"active", "recurrence", "relapse"})


@dataclass(frozen=True, slots=True)
class Demographics:
    birth_date: date | None
    gender: str | None
    race_omb: tuple[str, ...]
    #: True when a US Core race extension is present, even with no OMB category.
    race_recorded: bool
    ethnicity_omb: tuple[str, ...]
    deceased: bool
    deceased_time: datetime | None


@dataclass(frozen=True, slots=True)
class ObservationPoint:
    """One value on a quantity's timeline.

    `value` is in the quantity's canonical unit when `quality` is "ok" or
    "implausible"; with "unit_unknown" it is the raw value in the raw `unit`.
    """

    value: float | None
    unit: str
    time: datetime
    source: str
    quality: Quality
    loinc: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class ConditionEntry:
    system: str
    code: str
    display: str | None
    onset: datetime | None
    abatement: datetime | None
    recorded: datetime | None
    source: str
    clinical_status: str | None
    active: bool
    #: FHIR condition-ver-status; None when the record does not say (US Core allows it).
    verification_status: str | None = None


@dataclass(frozen=True, slots=True)
class ProcedureEntry:
    """A performed procedure of one concept (revascularisation, dialysis)."""

    system: str
    code: str
    display: str | None
    performed: datetime | None
    status: str
    source: str


@dataclass(frozen=True, slots=True)
class MedicationEntry:
    rxnorm: str | None
    display: str | None
    kind: MedicationKind
    status: str
    authored: datetime | None
    effective_start: datetime | None
    effective_end: datetime | None
    source: str
    matched_by: MatchedBy
    note: str


@dataclass(frozen=True, slots=True)
class SmokingEntry:
    status: SmokingStatus | None
    system: str | None
    code: str
    display: str | None
    time: datetime
    source: str


@dataclass(frozen=True, slots=True)
class Twin:
    """One patient's twin state.  Mappings are keyed in a fixed (sorted) order."""

    patient_id: str
    demographics: Demographics
    observations: Mapping[str, tuple[ObservationPoint, ...]]
    conditions: Mapping[str, tuple[ConditionEntry, ...]]
    medications: Mapping[str, tuple[MedicationEntry, ...]]
    smoking: tuple[SmokingEntry, ...]
    issues: tuple[IngestIssue, ...]
    procedures: Mapping[str, tuple[ProcedureEntry, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary: per quantity the count and the latest point."""
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
            "demographics": _demographics_state(self.demographics),
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
            "procedures": {
                concept: [_procedure_state(e) for e in entries]
                for concept, entries in self.procedures.items()
            },
            "smoking": _smoking_state(self.smoking[-1]) if self.smoking else None,
            "issues": [_issue_state(i) for i in self.issues],
            "content_hash": self.content_hash(),
        }

    def to_state(self) -> dict[str, Any]:
        """The whole state as JSON-ready data; `Twin.from_state` inverts it.

        Procedures appear only when there are some, so a twin without any keeps the
        content hash it had before procedures were read.
        """
        state = {
            "patient_id": self.patient_id,
            "demographics": _demographics_state(self.demographics),
            "observations": {
                name: [_point_state(p) for p in points]
                for name, points in self.observations.items()
            },
            "conditions": {
                concept: [_condition_state(e) for e in entries]
                for concept, entries in self.conditions.items()
            },
            "medications": {
                cls: [_medication_state(e) for e in entries]
                for cls, entries in self.medications.items()
            },
            "smoking": [_smoking_state(s) for s in self.smoking],
            "issues": [_issue_state(i) for i in self.issues],
        }
        if self.procedures:
            state["procedures"] = {
                concept: [_procedure_state(e) for e in entries]
                for concept, entries in self.procedures.items()
            }
        return state

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the state: same data, same hash."""
        canonical = json.dumps(
            self.to_state(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Twin:
        """Rebuild a twin from `to_state()` output (e.g. a stored version)."""
        demo = state["demographics"]
        return cls(
            patient_id=state["patient_id"],
            demographics=Demographics(
                birth_date=_date(demo["birth_date"]),
                gender=demo["gender"],
                race_omb=tuple(demo["race_omb"]),
                race_recorded=demo["race_recorded"],
                ethnicity_omb=tuple(demo["ethnicity_omb"]),
                deceased=demo["deceased"],
                deceased_time=_datetime(demo["deceased_time"]),
            ),
            observations={
                name: tuple(
                    ObservationPoint(
                        value=p["value"],
                        unit=p["unit"],
                        time=_required_datetime(p["time"]),
                        source=p["source"],
                        quality=p["quality"],
                        loinc=p["loinc"],
                        note=p["note"],
                    )
                    for p in points
                )
                for name, points in state["observations"].items()
            },
            conditions={
                concept: tuple(
                    ConditionEntry(
                        system=e["system"],
                        code=e["code"],
                        display=e["display"],
                        onset=_datetime(e["onset"]),
                        abatement=_datetime(e["abatement"]),
                        recorded=_datetime(e["recorded"]),
                        source=e["source"],
                        clinical_status=e["clinical_status"],
                        active=e["active"],
                        verification_status=e.get("verification_status"),
                    )
                    for e in entries
                )
                for concept, entries in state["conditions"].items()
            },
            medications={
                med_class: tuple(
                    MedicationEntry(
                        rxnorm=e["rxnorm"],
                        display=e["display"],
                        kind=e["kind"],
                        status=e["status"],
                        authored=_datetime(e["authored"]),
                        effective_start=_datetime(e["effective_start"]),
                        effective_end=_datetime(e["effective_end"]),
                        source=e["source"],
                        matched_by=e["matched_by"],
                        note=e["note"],
                    )
                    for e in entries
                )
                for med_class, entries in state["medications"].items()
            },
            smoking=tuple(
                SmokingEntry(
                    status=s["status"],
                    system=s["system"],
                    code=s["code"],
                    display=s["display"],
                    time=_required_datetime(s["time"]),
                    source=s["source"],
                )
                for s in state["smoking"]
            ),
            issues=tuple(
                IngestIssue(i["resource_type"], i["resource_id"], i["reason"])
                for i in state["issues"]
            ),
            procedures={
                concept: tuple(
                    ProcedureEntry(
                        system=e["system"],
                        code=e["code"],
                        display=e["display"],
                        performed=_datetime(e["performed"]),
                        status=e["status"],
                        source=e["source"],
                    )
                    for e in entries
                )
                for concept, entries in state.get("procedures", {}).items()
            },
        )


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
            smoking.extend(_smoking(record))
        elif isinstance(record, ConditionRecord):
            for concept, entry in _conditions(record):
                conditions[concept].append(entry)
        elif isinstance(record, MedicationRecord):
            for med_class, med_entry in _medications(record):
                medications[med_class].append(med_entry)
        elif isinstance(record, ProcedureRecord):
            for proc_concept, proc_entry in _procedures(record):
                procedures[proc_concept].append(proc_entry)
    smoking.sort(key=lambda s: (s.time, s.source))
    return Twin(
        patient_id=result.patient.id,
        demographics=_demographics(result.patient),
        observations={
            name: tuple(sorted(points[name], key=lambda p: (p.time, p.source)))
            for name in sorted(points)
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
            f"{record.source} has unit {raw_unit!r}, not in the conversion table for {name}",
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


def _smoking(record: ObservationRecord) -> list[SmokingEntry]:
    if not record.smoking_codings:
        return []
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
    return [
        SmokingEntry(status, chosen.system, chosen.code, chosen.display, record.time, record.source)
    ]


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


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value is not None else None


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _required_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _demographics_state(d: Demographics) -> dict[str, Any]:
    return {
        "birth_date": _iso(d.birth_date),
        "gender": d.gender,
        "race_omb": list(d.race_omb),
        "race_recorded": d.race_recorded,
        "ethnicity_omb": list(d.ethnicity_omb),
        "deceased": d.deceased,
        "deceased_time": _iso(d.deceased_time),
    }


def _point_state(p: ObservationPoint) -> dict[str, Any]:
    return {
        "value": p.value,
        "unit": p.unit,
        "time": p.time.isoformat(),
        "source": p.source,
        "quality": p.quality,
        "loinc": p.loinc,
        "note": p.note,
    }


def _procedure_state(e: ProcedureEntry) -> dict[str, Any]:
    return {
        "system": e.system,
        "code": e.code,
        "display": e.display,
        "performed": _iso(e.performed),
        "status": e.status,
        "source": e.source,
    }


def _condition_state(e: ConditionEntry) -> dict[str, Any]:
    state = {
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
    # Only when recorded, so that twins read before it was kept hash as they did.
    if e.verification_status is not None:
        state["verification_status"] = e.verification_status
    return state


def _medication_state(e: MedicationEntry) -> dict[str, Any]:
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


def _smoking_state(s: SmokingEntry) -> dict[str, Any]:
    return {
        "status": s.status,
        "system": s.system,
        "code": s.code,
        "display": s.display,
        "time": s.time.isoformat(),
        "source": s.source,
    }


def _issue_state(i: IngestIssue) -> dict[str, Any]:
    return {"resource_type": i.resource_type, "resource_id": i.resource_id, "reason": i.reason}
