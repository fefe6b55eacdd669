"""fhir.resources at the edge: the R4 element names of each resource type the twin reads,
and the full R4B validation of a resource the reader's own check
(``twin_engine.fhir.elements``) could not vouch for, with its reason when it refuses.

A well-formed resource (the common case) never reaches pydantic here; an unusual but valid
one (an extension on a primitive, a contained resource) is validated and read from the
model; an invalid one is skipped with the first bad element named.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Final

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from pydantic import ValidationError

from twin_engine.fhir.elements import (
    ConditionFields,
    MedicationUseFields,
    ObservationFields,
    PatientFields,
    ProcedureFields,
)
from twin_engine.fhir.entries import Entry, IngestIssue

MODELS: Final[Mapping[str, type[FHIRResourceModel]]] = {
    "Patient": Patient,
    "Observation": Observation,
    "Condition": Condition,
    "Procedure": Procedure,
    "Medication": Medication,
    "MedicationRequest": MedicationRequest,
    "MedicationStatement": MedicationStatement,
    "MedicationAdministration": MedicationAdministration,
}


@cache
def known_fields(resource_type: str) -> frozenset[str]:
    """The R4 element names of a resource type (JSON names, ``_x`` extensions included)."""
    model = MODELS[resource_type]
    names = {f.alias or n for n, f in model.model_fields.items()}
    return frozenset(names | {"resourceType"})


def unknown_fields(entry: Entry, issues: list[IngestIssue]) -> bool:
    """True (with an issue) when the resource has elements R4 does not define: an R5-only or
    misspelled element is caught even where the twin does not read it."""
    known = known_fields(entry.resource_type)
    if entry.resource.keys() <= known:
        return False
    unknown = sorted(k for k in entry.resource if k not in known)
    issues.append(
        entry.issue(
            f"{entry.source} has fields not defined in FHIR R4: {', '.join(unknown)}; skipped"
        )
    )
    return True


def validate(
    entry: Entry, keep: frozenset[str], issues: list[IngestIssue]
) -> FHIRResourceModel | None:
    """The R4B model of the entry's projection on ``keep``, or None with the reason."""
    projection = {k: v for k, v in entry.resource.items() if k in keep}
    try:
        return MODELS[entry.resource_type].model_validate(projection)
    except ValidationError as exc:
        issues.append(entry.issue(_reason(entry, exc)))
        return None


def _reason(entry: Entry, exc: ValidationError) -> str:
    """One line naming the first bad field, not pydantic's whole report."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "resource"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{entry.source} is not valid FHIR R4: {where}: {first['msg']}{more}; skipped"


# -- the same fields as the reader's own check, read from a validated model ---------------


def observation_fields(model: FHIRResourceModel) -> ObservationFields | None:
    if not isinstance(model, Observation):
        return None
    period = model.effectivePeriod
    return ObservationFields(
        str(model.status),
        model.effectiveDateTime,
        model.effectiveInstant,
        period.start if period else None,
        model.issued,
    )


def patient_fields(model: FHIRResourceModel) -> PatientFields | None:
    if not isinstance(model, Patient):
        return None
    return PatientFields(
        model.gender, model.birthDate, model.deceasedBoolean, model.deceasedDateTime
    )


def condition_fields(model: FHIRResourceModel) -> ConditionFields | None:
    if not isinstance(model, Condition):
        return None
    onset_start = model.onsetPeriod.start if model.onsetPeriod else None
    abatement_end = model.abatementPeriod.end if model.abatementPeriod else None
    return ConditionFields(
        model.onsetDateTime or onset_start,
        model.abatementDateTime or abatement_end,
        model.recordedDate,
    )


def procedure_fields(model: FHIRResourceModel) -> ProcedureFields | None:
    if not isinstance(model, Procedure):
        return None
    start = model.performedPeriod.start if model.performedPeriod else None
    return ProcedureFields(str(model.status), model.performedDateTime or start)


def medication_use_fields(model: FHIRResourceModel) -> MedicationUseFields | None:
    if isinstance(model, MedicationRequest):
        return MedicationUseFields(str(model.status), model.authoredOn, None, None, None)
    if not isinstance(model, MedicationStatement | MedicationAdministration):
        return None
    period = model.effectivePeriod
    asserted = model.dateAsserted if isinstance(model, MedicationStatement) else None
    return MedicationUseFields(
        str(model.status),
        asserted,
        model.effectiveDateTime,
        period.start if period else None,
        period.end if period else None,
    )
