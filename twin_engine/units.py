"""Explicit unit conversion table: each quantity has one canonical UCUM unit.

The one rule for a FHIR Quantity's unit, for every reader (the twin's timelines and the
vancomycin dose history alike):

* ``Quantity.code`` is the computable unit (FHIR R4 Quantity: "a computer processable
  form of the unit"), a UCUM code (https://ucum.org/ucum, case-sensitive form). When
  present it decides alone: it is matched exactly against the UCUM codes the quantity
  accepts. A code that is not one of them — including a printed spelling used as a code,
  such as ``lbs`` or ``mmHg``, which are not UCUM — is refused and named; it is never
  read as the unit its letters suggest.
* ``Quantity.unit`` is free text for people. It is read only when there is no code:
  a UCUM code written there is taken as itself, and a short list of printed spellings
  (``PRINTED_UNITS``: "lbs", "mmHg", "µmol/L"...) is mapped explicitly to the UCUM code
  each unambiguously names. Nothing else is matched.

Anything else is *unknown*: the value is kept raw on the timeline, flagged
`unit_unknown` with the reason, and never used for a feature or a dose. Guessing a unit
is how a 10x dosing error starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from twin_engine.codes import QuantityName


@dataclass(frozen=True, slots=True)
class Conversion:
    """canonical = value x scale + offset."""

    scale: float
    offset: float = 0.0

    def apply(self, value: float) -> float:
        return value * self.scale + self.offset


@dataclass(frozen=True, slots=True)
class UnitRule:
    """The canonical unit of one quantity and the source units accepted for it."""

    canonical: str
    accepted: Mapping[str, Conversion]


@dataclass(frozen=True, slots=True)
class Normalised:
    """A value in the canonical unit, or the raw value when the unit is unknown."""

    value: float
    unit: str
    known: bool
    #: Why the unit was not read (None when known).
    reason: str | None = None


_SAME: Final = Conversion(1.0)

# Cholesterol: molar mass 386.65 g/mol, so 1 mmol/L = 38.67 mg/dL (docs/clinical.md;
# NCEP ATP III conversion factor).
_CHOLESTEROL_MMOL_L: Final = Conversion(38.67)
# Triglycerides (as triolein, 885.7 g/mol): 1 mmol/L = 88.57 mg/dL (NCEP ATP III).
_TRIGLYCERIDES_MMOL_L: Final = Conversion(88.57)
# Creatinine, molar mass 113.12 g/mol: 1 mg/dL = 88.4 umol/L (docs/clinical.md; KDIGO 2012).
_CREATININE_UMOL_L: Final = Conversion(1.0 / 88.4)
# Albumin/creatinine ratio: 1 mg/mmol = 8.84 mg/g (= 1 / 0.11312 g creatinine per mmol;
# KDIGO 2012 CKD guideline, Table 5).  g/mol equals mg/mmol numerically.
_UACR_MG_MMOL: Final = Conversion(8.84)
# HbA1c IFCC (mmol/mol) -> NGSP (%): NGSP = 0.09148 x IFCC + 2.152 (IFCC-NGSP master
# equation, Hoelzel et al., Clin Chem 2004;50:166).
_HBA1C_IFCC: Final = Conversion(0.09148, 2.152)
# Exact definitions: 1 lb (avoirdupois) = 0.45359237 kg; 1 in = 2.54 cm (1959 agreement).
_POUND: Final = Conversion(0.45359237)
_INCH: Final = Conversion(2.54)
# degF -> Cel: (F - 32) x 5/9.
_FAHRENHEIT: Final = Conversion(5.0 / 9.0, -32.0 * 5.0 / 9.0)

# UCUM writes the litre "L" or "l" (both are defined: UCUM 4.4 table 5, "l" and "L"), so
# "mg/dl" is the same code as "mg/dL"; both spellings are listed where litres appear.
_MM_HG: Final = UnitRule("mm[Hg]", {"mm[Hg]": _SAME})
_CHOLESTEROL: Final = UnitRule(
    "mg/dL",
    {
        "mg/dL": _SAME,
        "mg/dl": _SAME,
        "mmol/L": _CHOLESTEROL_MMOL_L,
        "mmol/l": _CHOLESTEROL_MMOL_L,
    },
)
_PER_MIN: Final = {"/min": _SAME, "{beats}/min": _SAME}

UNIT_TABLE: Final[Mapping[QuantityName, UnitRule]] = {
    "systolic_bp": _MM_HG,
    "diastolic_bp": _MM_HG,
    "total_cholesterol": _CHOLESTEROL,
    "hdl_cholesterol": _CHOLESTEROL,
    "ldl_cholesterol": _CHOLESTEROL,
    "triglycerides": UnitRule(
        "mg/dL",
        {
            "mg/dL": _SAME,
            "mg/dl": _SAME,
            "mmol/L": _TRIGLYCERIDES_MMOL_L,
            "mmol/l": _TRIGLYCERIDES_MMOL_L,
        },
    ),
    "creatinine": UnitRule(
        "mg/dL",
        {
            "mg/dL": _SAME,
            "mg/dl": _SAME,
            "umol/L": _CREATININE_UMOL_L,
            "umol/l": _CREATININE_UMOL_L,
        },
    ),
    # An eGFR "mL/min" without the 1.73 m2 normalisation is a different quantity
    # (it appears in the Synthea corpus); it is deliberately not accepted.
    "egfr": UnitRule("mL/min/{1.73_m2}", {"mL/min/{1.73_m2}": _SAME}),
    "uacr": UnitRule(
        "mg/g",
        {
            "mg/g": _SAME,
            "mg/g{creat}": _SAME,
            "ug/mg": _SAME,  # 1 ug/mg = 1 mg/g
            "mg/mmol": _UACR_MG_MMOL,
            "mg/mmol{creat}": _UACR_MG_MMOL,
            "g/mol": _UACR_MG_MMOL,
            "g/mol{creat}": _UACR_MG_MMOL,
        },
    ),
    "hba1c": UnitRule("%", {"%": _SAME, "%{HbA1c}": _SAME, "mmol/mol": _HBA1C_IFCC}),
    "bmi": UnitRule("kg/m2", {"kg/m2": _SAME}),
    "weight": UnitRule("kg", {"kg": _SAME, "g": Conversion(0.001), "[lb_av]": _POUND}),
    "height": UnitRule("cm", {"cm": _SAME, "m": Conversion(100.0), "[in_i]": _INCH}),
    "heart_rate": UnitRule("/min", _PER_MIN),
    "respiratory_rate": UnitRule("/min", {"/min": _SAME, "{breaths}/min": _SAME}),
    "spo2": UnitRule("%", {"%": _SAME}),
    "temperature": UnitRule("Cel", {"Cel": _SAME, "[degF]": _FAHRENHEIT}),
    # 1 ug/mL = 1 mg/L (the same mass per volume).
    "vancomycin": UnitRule("mg/L", {"mg/L": _SAME, "mg/l": _SAME, "ug/mL": _SAME, "ug/ml": _SAME}),
}

#: Printed spellings read in ``Quantity.unit`` (never in ``code``), each mapped to the one
#: UCUM code it names: the everyday forms of the same units (µ for u, mcg for ug, the
#: avoirdupois pound as people write it in the United States, the conventional mmHg and
#: degree signs). An explicit list, so every accepted spelling is visible and tested.
PRINTED_UNITS: Final[Mapping[str, str]] = {
    "mmHg": "mm[Hg]",
    "mm Hg": "mm[Hg]",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "in": "[in_i]",
    "bpm": "/min",
    "beats/minute": "/min",
    "breaths/minute": "/min",
    "°C": "Cel",
    "°F": "[degF]",
    "µmol/L": "umol/L",
    "μmol/L": "umol/L",  # Greek small mu (U+03BC) as well as the micro sign (U+00B5)
    "µg/mL": "ug/mL",
    "μg/mL": "ug/mL",
    "mcg/mL": "ug/mL",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73_m2": "mL/min/{1.73_m2}",
    "mL/min/1.73 m2": "mL/min/{1.73_m2}",
    "kg/m^2": "kg/m2",
}


def canonical_unit(quantity: QuantityName) -> str:
    return UNIT_TABLE[quantity].canonical


def normalise(
    quantity: QuantityName, value: float, ucum_code: str | None, unit: str | None
) -> Normalised:
    """Convert `value` to the quantity's canonical unit, or report the unit unknown and why
    (the rule is the module's docstring)."""
    rule = UNIT_TABLE[quantity]
    if ucum_code is not None:
        conversion = rule.accepted.get(ucum_code)
        if conversion is not None:
            return Normalised(conversion.apply(value), rule.canonical, True)
        printed = PRINTED_UNITS.get(ucum_code.strip())
        why = (
            f"code {ucum_code!r} is not a UCUM code (UCUM writes it {printed!r})"
            if printed is not None
            else f"code {ucum_code!r} is not {_accepted(quantity, rule)}"
        )
        return Normalised(value, ucum_code, False, why)
    if unit is not None:
        text = unit.strip()
        conversion = rule.accepted.get(PRINTED_UNITS.get(text, text))
        if conversion is not None:
            return Normalised(conversion.apply(value), rule.canonical, True)
        return Normalised(value, unit, False, f"unit {unit!r} is not {_accepted(quantity, rule)}")
    return Normalised(value, "", False, "no unit")


def _accepted(quantity: QuantityName, rule: UnitRule) -> str:
    return f"a unit accepted for {quantity} ({', '.join(rule.accepted)})"
