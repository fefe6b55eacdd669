"""The R4 required value sets of the coded elements the twin reads, checked by the reader.

fhir.resources accepts any code where R4 binds a required value set (an Observation
``status`` "done", a Patient ``gender`` "F" and a MedicationRequest ``intent`` "maybe" all
passed its validation), so the reader checks them itself, once, for every resource it
reads, on the fast path and the full-check path alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# FHIR R4 ObservationStatus (https://hl7.org/fhir/R4/valueset-observation-status.html).
OBSERVATION_STATUS: Final = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
# Required bindings of the status elements the twin reads (FHIR R4):
# EventStatus https://hl7.org/fhir/R4/valueset-event-status.html (Procedure);
# medicationrequest-status, medication-statement-status, medication-admin-status;
# AdministrativeGender https://hl7.org/fhir/R4/valueset-administrative-gender.html;
# medicationrequest-intent https://hl7.org/fhir/R4/valueset-medicationrequest-intent.html.
EVENT_STATUS: Final = frozenset(
    {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    }
)
STATUS_VALUE_SETS: Final[dict[str, frozenset[str]]] = {
    "Observation": OBSERVATION_STATUS,
    "Procedure": EVENT_STATUS,
    "MedicationRequest": frozenset(
        {
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        }
    ),
    "MedicationStatement": frozenset(
        {
            "active",
            "completed",
            "entered-in-error",
            "intended",
            "stopped",
            "on-hold",
            "unknown",
            "not-taken",
        }
    ),
    "MedicationAdministration": frozenset(
        {
            "in-progress",
            "not-done",
            "on-hold",
            "completed",
            "entered-in-error",
            "stopped",
            "unknown",
        }
    ),
}
GENDER: Final = frozenset({"male", "female", "other", "unknown"})
REQUEST_INTENT: Final = frozenset(
    {
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
#: Every coded element the twin reads whose R4 binding is required, by resource type.
REQUIRED_CODES: Final[dict[str, dict[str, frozenset[str]]]] = {
    **{kind: {"status": codes} for kind, codes in STATUS_VALUE_SETS.items()},
    "Patient": {"gender": GENDER},
}
REQUIRED_CODES["MedicationRequest"] = {
    **REQUIRED_CODES["MedicationRequest"],
    "intent": REQUEST_INTENT,
}
#: Elements R4 requires (1..1) among those above.
_MANDATORY: Final = frozenset({"status", "intent"})


def code_problem(resource_type: str, raw: Mapping[str, Any]) -> str | None:
    """Why a coded element the twin reads is outside its R4 required value set (or a
    mandatory one is missing), or None."""
    for element, allowed in REQUIRED_CODES.get(resource_type, {}).items():
        value = raw.get(element)
        if isinstance(value, str) and value in allowed:
            continue
        if value is None and element not in _MANDATORY:
            continue
        if value is None:
            return f"has no {element} (required in FHIR R4)"
        return (
            f"has {element} {value!r}, which is not in the R4 value set "
            f"({', '.join(sorted(allowed))})"
        )
    return None
