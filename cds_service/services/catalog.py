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
    #: Which card builder answers: one risk model, or the cardio-renal suite.
    kind: Literal["single-risk", "cardio-renal", "vancomycin"] = "single-risk"

    @property
    def required_models(self) -> tuple[str, ...]:
        """Every model this service runs; it is offered only when all are loaded."""
        if self.kind == "cardio-renal":
            return ("prevent", "prevent_30y", "pce", "kfre", "kfre_non_na")
        if self.kind == "vancomycin":
            return ()  # PK models load through onnx_models.pk when the app starts
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


#: The Observations every risk service asks for: the union of what PCE, PREVENT and
#: KFRE read. One query for all patient-view services means the same data build the
#: same twin, so two services' cards on one patient name one twin version (and the
#: clinician app, which reads the same query, opens that version).
RISK_OBSERVATION_LOINC = (
    *_CARDIO_LOINC,
    "13457-7",  # LDL cholesterol, calculated (for the statin what-if)
    "18262-6",  # LDL cholesterol, direct
    "9318-7",  # albumin/creatinine ratio, urine
    "14959-1",  # microalbumin/creatinine ratio, urine
    "39156-5",  # BMI (PREVENT heart-failure equations)
    "8462-4",  # diastolic BP (the twin's blood-pressure timeline)
)


ASCVD_RISK = ServiceDefinition(
    id="ascvd-risk",
    hook="patient-view",
    title="10-year ASCVD risk (Pooled Cohort Equations)",
    description=(
        "The 2018 AHA/ACC statin decision for the patient: secondary prevention for "
        "clinical ASCVD (Conditions or Procedures), high intensity at LDL >= 190 mg/dL, at "
        "least moderate intensity in diabetes at 40-75, else the 10-year ASCVD risk (2013 "
        "Pooled Cohort Equations, from untreated lipids) and its tier, with the factors "
        "that moved it and a draft statin order where one is indicated."
    ),
    model_id="pce",
    prefetch={
        "patient": "Patient/{{context.patientId}}",
        "observations": (
            "Observation?patient={{context.patientId}}&code=" + _codes(RISK_OBSERVATION_LOINC)
        ),
        "conditions": "Condition?patient={{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}",
        # A PCI or CABG recorded only as a Procedure is clinical ASCVD (Grundy 2019, 4.1);
        # dialysis may be recorded only as one.
        "procedures": "Procedure?patient={{context.patientId}}",
    },
    usage_requirements=(
        "Send the prefetch, or fhirServer with fhirAuthorization scoped to read "
        "Patient, Observation, Condition, MedicationRequest and Procedure for the patient."
    ),
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

CARDIO_RENAL_RISK = ServiceDefinition(
    id="cardio-renal-risk",
    hook="patient-view",
    title="Cardiovascular and kidney failure risk (PREVENT, PCE, KFRE)",
    description=(
        "AHA PREVENT 10-year (and, under 60, 30-year) CVD, ASCVD and heart failure risk "
        "for adults without cardiovascular disease; for chronic kidney disease G3-G5 the "
        "stage, the Kidney Failure Risk Equation and KDIGO 2024 referral advice; an acute "
        "kidney injury card instead of any kidney-based risk during AKI; and an order "
        "suggestion instead of a number when a laboratory input is missing or too old."
    ),
    model_id="prevent",
    prefetch=dict(ASCVD_RISK.prefetch),
    usage_requirements=ASCVD_RISK.usage_requirements,
    kind="cardio-renal",
)

_VANCOMYCIN_LOINC = (
    "20578-1",  # vancomycin [mass/volume] in serum or plasma
    "4092-3",  # vancomycin trough
    "4090-7",  # vancomycin peak
    "29463-7",  # body weight
    "2160-0",  # creatinine, serum/plasma
    "38483-4",  # creatinine, blood
)

VANCOMYCIN_DOSING = ServiceDefinition(
    id="vancomycin-dosing",
    hook="order-select",
    title="Vancomycin AUC-guided dosing (Bayesian)",
    description=(
        "For a drafted vancomycin order: the patient's own pharmacokinetics fitted to "
        "their measured levels (Bayesian MAP), the drafted regimen's predicted AUC24 with "
        "its 90% interval and probability of reaching 400-600 mg·h/L, and a recommended "
        "regimen as an update to the draft when it is off target. The population PK "
        "model is a deployment setting (Goti 2018 by default) and each card names it."
    ),
    model_id="vancomycin_goti2018",
    prefetch={
        "patient": "Patient/{{context.patientId}}",
        "observations": (
            "Observation?patient={{context.patientId}}&code=" + _codes(_VANCOMYCIN_LOINC)
        ),
        "administrations": "MedicationAdministration?patient={{context.patientId}}",
        "medications": "MedicationRequest?patient={{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "procedures": "Procedure?patient={{context.patientId}}",
        # Dialysis sessions are often recorded as encounters (twin_engine.dialysis).
        "encounters": "Encounter?patient={{context.patientId}}",
    },
    usage_requirements=(
        "Send the prefetch, or fhirServer with fhirAuthorization scoped to read the "
        "patient's Observations, MedicationAdministrations, MedicationRequests, "
        "Conditions, Procedures and Encounters. Without a dialysis record in the last "
        "30 days the patient is dosed as not on dialysis, and the card says so."
    ),
    kind="vancomycin",
)
VANCOMYCIN_DOSING_AT_SIGN = replace(
    VANCOMYCIN_DOSING,
    id="vancomycin-dosing-sign",
    hook="order-sign",
    title="Vancomycin AUC check at signing (Bayesian)",
)

SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ASCVD_RISK,
        ASCVD_RISK_AT_DISCHARGE,
        CARDIO_RENAL_RISK,
        VANCOMYCIN_DOSING,
        VANCOMYCIN_DOSING_AT_SIGN,
    )
}
