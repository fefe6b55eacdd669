"""Explicit unit conversion table: each quantity has one canonical UCUM unit.

A source unit is matched on its UCUM `code` first, then on the printed `unit` string.
Anything not in the table is *unknown*: the value is kept raw on the timeline, flagged
`unit_unknown`, and never used for a feature.  Guessing a unit is how a 10x dosing
error starts, so there is no fuzzy matching beyond the listed spellings.
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

_MM_HG: Final = UnitRule("mm[Hg]", {"mm[Hg]": _SAME, "mmHg": _SAME, "mm Hg": _SAME})
_CHOLESTEROL: Final = UnitRule("mg/dL", {"mg/dL": _SAME, "mmol/L": _CHOLESTEROL_MMOL_L})
_PER_MIN: Final = {"/min": _SAME, "{beats}/min": _SAME, "beats/minute": _SAME, "bpm": _SAME}

UNIT_TABLE: Final[Mapping[QuantityName, UnitRule]] = {
    "systolic_bp": _MM_HG,
    "diastolic_bp": _MM_HG,
    "total_cholesterol": _CHOLESTEROL,
    "hdl_cholesterol": _CHOLESTEROL,
    "ldl_cholesterol": _CHOLESTEROL,
    "triglycerides": UnitRule("mg/dL", {"mg/dL": _SAME, "mmol/L": _TRIGLYCERIDES_MMOL_L}),
    "creatinine": UnitRule(
        "mg/dL", {"mg/dL": _SAME, "umol/L": _CREATININE_UMOL_L, "µmol/L": _CREATININE_UMOL_L}
    ),
    # An eGFR "mL/min" without the 1.73 m2 normalisation is a different quantity
    # (it appears in the Synthea corpus); it is deliberately not accepted.
    "egfr": UnitRule(
        "mL/min/{1.73_m2}",
        {"mL/min/{1.73_m2}": _SAME, "mL/min/1.73m2": _SAME, "mL/min/1.73_m2": _SAME},
    ),
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
    "bmi": UnitRule("kg/m2", {"kg/m2": _SAME, "kg/m^2": _SAME}),
    "weight": UnitRule(
        "kg",
        {"kg": _SAME, "g": Conversion(0.001), "[lb_av]": _POUND, "lb": _POUND, "lbs": _POUND},
    ),
    "height": UnitRule("cm", {"cm": _SAME, "m": Conversion(100.0), "[in_i]": _INCH, "in": _INCH}),
    "heart_rate": UnitRule("/min", _PER_MIN),
    "respiratory_rate": UnitRule(
        "/min", {"/min": _SAME, "{breaths}/min": _SAME, "breaths/minute": _SAME}
    ),
    "spo2": UnitRule("%", {"%": _SAME}),
    "temperature": UnitRule(
        "Cel", {"Cel": _SAME, "°C": _SAME, "[degF]": _FAHRENHEIT, "°F": _FAHRENHEIT}
    ),
    # 1 ug/mL = 1 mg/L.
    "vancomycin": UnitRule("mg/L", {"mg/L": _SAME, "ug/mL": _SAME, "mcg/mL": _SAME}),
}


def canonical_unit(quantity: QuantityName) -> str:
    return UNIT_TABLE[quantity].canonical


def normalise(
    quantity: QuantityName, value: float, ucum_code: str | None, unit: str | None
) -> Normalised:
    """Convert `value` to the quantity's canonical unit, or report the unit unknown.

    The UCUM `code`, when present, decides alone: the printed `unit` is free text, and a
    code we do not know is a unit we do not know, whatever the text beside it says (a
    code "mL/min" printed "mL/min/1.73m2" is not an eGFR). The printed unit is read only
    when there is no code.
    """
    rule = UNIT_TABLE[quantity]
    candidate = ucum_code if ucum_code is not None else unit
    if candidate is not None:
        conversion = rule.accepted.get(candidate.strip())
        if conversion is not None:
            return Normalised(conversion.apply(value), rule.canonical, True)
    return Normalised(value, candidate if candidate is not None else "", False)
