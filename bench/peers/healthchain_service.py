"""The peer for bench/load.py: a patient-view CDS service written with healthchain.

Runs in its own virtual environment (bench/.venvs/healthchain, ``pip install
healthchain``), never in ours; bench/load.py starts it with

    <venv>/bin/python -m uvicorn healthchain_service:app --app-dir bench/peers --workers N

What it does, per call, the way healthchain's docs and ``healthchain new`` template do it:
  - ``HealthChainAPI`` + ``CDSHooksService``; the route validates the body as its
    ``CDSRequest`` (pydantic) and calls the handler below;
  - ``convert_prefetch_to_fhir_objects`` parses every prefetch value with fhir.resources
    (R4B models, as the data is R4): the Patient and the Observation, Condition and
    MedicationRequest searchset Bundles, every entry validated;
  - picks the latest total cholesterol (LOINC 2093-3), HDL (2085-9) and systolic blood
    pressure (8480-6, alone or as a component of the 85354-9 panel) and the age;
  - returns one info card naming them.

What it does not do, and ours does: build and version a twin in SQLite, unit
conversion and plausibility checks, the ONNX risk model, Shapley explanations, the
audit-trail write, authentication of the CDS client, the fhirServer fetch path.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from healthchain.fhir import convert_prefetch_to_fhir_objects
from healthchain.fhir.version import set_default_version
from healthchain.gateway import HealthChainAPI
from healthchain.gateway.cds import CDSHooksService
from healthchain.models.requests.cdsrequest import CDSRequest
from healthchain.models.responses.cdsresponse import CDSResponse

# The bench's patients are FHIR R4; fhir.resources' R4B models read them (R5 is the default).
set_default_version("R4B")

TOTAL_CHOLESTEROL = "2093-3"
HDL = "2085-9"
SYSTOLIC = "8480-6"
BP_PANEL = "85354-9"

app = HealthChainAPI(title="healthchain peer", enable_events=False)
cds = CDSHooksService(use_events=False)


def _codes(concept: Any) -> set[str]:
    return {c.code for c in (concept.coding or [])} if concept is not None else set()


def _latest(observations: list[Any]) -> dict[str, tuple[str, float]]:
    """The latest value per code of interest, with its date."""
    found: dict[str, tuple[str, float]] = {}
    for obs in observations:
        when = str(obs.effectiveDateTime or "")
        codes = _codes(obs.code)
        pairs: list[tuple[str, Any]] = [(c, obs.valueQuantity) for c in codes]
        if BP_PANEL in codes:
            for comp in obs.component or []:
                pairs += [(c, comp.valueQuantity) for c in _codes(comp.code)]
        for code, quantity in pairs:
            wanted = code in (TOTAL_CHOLESTEROL, HDL, SYSTOLIC) and quantity is not None
            if wanted and (code not in found or when > found[code][0]):
                found[code] = (when, float(quantity.value))
    return found


@cds.hook("patient-view", id="lipids-summary", title="Lipids and blood pressure")
def patient_view(request: CDSRequest) -> CDSResponse:
    resources = convert_prefetch_to_fhir_objects(request.prefetch or {})
    patient = resources.get("patient")
    bundle = resources.get("observations")
    observations = [e.resource for e in (getattr(bundle, "entry", None) or [])]
    latest = _latest(observations)
    birth = getattr(patient, "birthDate", None)
    age = (date(2026, 1, 1) - birth).days // 365 if isinstance(birth, date) else None
    parts = [f"age {age}"] if age is not None else []
    for code, label, unit in (
        (TOTAL_CHOLESTEROL, "TC", "mg/dL"),
        (HDL, "HDL", "mg/dL"),
        (SYSTOLIC, "SBP", "mm[Hg]"),
    ):
        if code in latest:
            when, value = latest[code]
            parts.append(f"{label} {value:g} {unit} ({when[:10]})")
    return CDSResponse(
        cards=[
            {
                "summary": "Cardiovascular inputs: " + ", ".join(parts)[:110],
                "indicator": "info",
                "source": {"label": "healthchain peer"},
            }
        ]
    )


app.register_service(cds)
