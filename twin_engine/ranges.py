"""Plausibility ranges: values outside are flagged `implausible` and never used.

These are outer limits of survivable physiology in canonical units, deliberately wide:
a value outside them is almost always a unit or data-entry error (e.g. creatinine in
umol/L labelled mg/dL), not a sick patient.  They are this project's choices, set by
the extremes reported in clinical laboratory practice, not taken from one guideline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from twin_engine.codes import QuantityName


@dataclass(frozen=True, slots=True)
class PlausibleRange:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


PLAUSIBLE_RANGES: Final[Mapping[QuantityName, PlausibleRange]] = {
    "systolic_bp": PlausibleRange(60.0, 300.0),  # mm[Hg]
    "diastolic_bp": PlausibleRange(20.0, 200.0),  # mm[Hg]
    "total_cholesterol": PlausibleRange(50.0, 1000.0),  # mg/dL
    "hdl_cholesterol": PlausibleRange(5.0, 200.0),  # mg/dL
    "ldl_cholesterol": PlausibleRange(5.0, 900.0),  # mg/dL
    "triglycerides": PlausibleRange(10.0, 10000.0),  # mg/dL (chylomicronaemia reaches 10^4)
    "creatinine": PlausibleRange(0.1, 25.0),  # mg/dL
    "egfr": PlausibleRange(1.0, 200.0),  # mL/min/1.73 m2
    "uacr": PlausibleRange(0.0, 30000.0),  # mg/g
    "hba1c": PlausibleRange(3.0, 20.0),  # %
    "bmi": PlausibleRange(10.0, 100.0),  # kg/m2
    "weight": PlausibleRange(0.3, 400.0),  # kg
    "height": PlausibleRange(20.0, 260.0),  # cm
    "heart_rate": PlausibleRange(20.0, 300.0),  # /min
    "respiratory_rate": PlausibleRange(2.0, 80.0),  # /min
    "spo2": PlausibleRange(40.0, 100.0),  # %
    "temperature": PlausibleRange(25.0, 45.0),  # Cel
    "vancomycin": PlausibleRange(0.0, 200.0),  # mg/L
}

#: Age in completed years.
AGE_RANGE: Final = PlausibleRange(0.0, 120.0)
