"""The CDS services this server offers, as discovery lists them.

A service names the hook it answers, the prefetch templates it wants and the model
it runs. Prefetch templates ask for exactly the data the model's inputs come from,
so an EHR that honours them spares us a round trip to its FHIR server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

LOINC = "http://loinc.org"

# Observations the cardiovascular risk service reads: lipids, blood pressure (alone
# and as panels 85354-9 / 55284-4, whose components carry 8480-6), smoking status,
# HbA1c (a diabetes signal), creatinine and eGFR (shown in the twin).
_CARDIO_LOINC = (
    "2093-3",  # total cholesterol
    "2085-9",  # HDL cholesterol
    "8480-6",  # systolic BP
    "85354-9",  # BP panel
    "55284-4",  # BP systolic & diastolic
    "72166-2",  # tobacco smoking status
    "4548-4",  # HbA1c
    "2160-0",  # creatinine, serum/plasma (mass/volume)
    "38483-4",  # creatinine, blood
    "98979-8",  # eGFR CKD-EPI 2021
)


def _codes(codes: tuple[str, ...]) -> str:
    return ",".join(f"{LOINC}|{c}" for c in codes)


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """One CDS service: what discovery says and which model it runs."""

    id: str
    hook: str
    title: str
    description: str
    model_id: str
    prefetch: dict[str, str] = field(default_factory=dict)
    usage_requirements: str | None = None
    #: Twin features that, when 1.0, put the patient outside the model's population.
    excluded_by: tuple[str, ...] = ()
    #: Which card builder answers: one risk model, or the cardio-renal suite.
    kind: Literal["single-risk", "cardio-renal"] = "single-risk"

    @property
    def required_models(self) -> tuple[str, ...]:
        """Every model this service runs; it is offered only when all are loaded."""
        if self.kind == "cardio-renal":
            return ("prevent", "pce", "kfre")
        return (self.model_id,)

    def discovery(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


ASCVD_RISK = ServiceDefinition(
    id="ascvd-risk",
    hook="patient-view",
    title="10-year ASCVD risk (Pooled Cohort Equations)",
    description=(
        "Estimates the 10-year risk of a first atherosclerotic cardiovascular event "
        "with the 2013 ACC/AHA Pooled Cohort Equations for adults 40-79 without ASCVD, "
        "from the patient's own lipids, blood pressure, treatment, smoking and diabetes "
        "status, and explains which factors moved it."
    ),
    model_id="pce",
    prefetch={
        "patient": "Patient/{{context.patientId}}",
        "observations": ("Observation?patient={{context.patientId}}&code=" + _codes(_CARDIO_LOINC)),
        "conditions": "Condition?patient={{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}",
    },
    usage_requirements=(
        "Send the prefetch, or fhirServer with fhirAuthorization scoped to read "
        "Patient, Observation, Condition and MedicationRequest for the patient."
    ),
    # The PCE are for primary prevention (Goff 2013): not for patients with clinical ASCVD.
    excluded_by=("clinical_ascvd",),
)

# The same assessment at discharge, when follow-up is being planned: a service may be
# offered under several hooks; discovery lists it once per hook, each with its own id.
ASCVD_RISK_AT_DISCHARGE = replace(
    ASCVD_RISK,
    id="ascvd-risk-discharge",
    hook="encounter-discharge",
    title="10-year ASCVD risk at discharge (Pooled Cohort Equations)",
    prefetch={**ASCVD_RISK.prefetch, "encounter": "Encounter/{{context.encounterId}}"},
)

SERVICES: dict[str, ServiceDefinition] = {s.id: s for s in (ASCVD_RISK, ASCVD_RISK_AT_DISCHARGE)}
